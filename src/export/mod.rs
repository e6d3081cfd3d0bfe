//! Distribution to on-prem hypervisors: disk formats (a native, parallel
//! streamOptimized VMDK writer; qemu-img for the others), OVF/OVA packages,
//! and checks of every written file.

pub mod disk;
pub mod format;
pub mod gce;
pub mod ova;
pub mod ovf;
pub mod source;
pub mod verify;
pub mod vhd;
pub mod vmdk;
pub mod write;
