//! The description of an AMI import (what to import, its name, copies,
//! sharing and tags) and the shapes of AWS names, without the AWS SDK:
//! shared by recipes (`distribution.ami`) and `kiln ami`, carried out by
//! [`crate::aws`].

pub mod names;
pub mod spec;

pub use names::{ArnKind, InvalidSetting};
pub use spec::{
    AmiSpec, BootMode, DiskFormat, RegionCopy, Sharing, DEFAULT_DESCRIPTION, DEFAULT_ROLE,
};
