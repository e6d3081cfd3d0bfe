//! Disk images: `qemu-img` wrappers (info, check, convert, create, resize,
//! map), format detection by magic bytes and backing-chain checks. Used by
//! the VM layer (overlays), exports and AWS imports; knows no VMs.

pub mod img;
