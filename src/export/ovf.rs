//! The OVF descriptor: written from a machine description and a profile
//! (`vsphere`, `workstation`, `virtualbox`), and parsed and checked against
//! the OVF schema's rules. Being written.
