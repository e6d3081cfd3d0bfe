//! Command-line values of library enums: clap's `ValueEnum` implemented here,
//! so the library's types carry no clap derive (clap lives only in `cli`).

use clap::builder::PossibleValue;
use clap::ValueEnum;

use crate::build::run::OnError;
use crate::toe::actions::spec::OsPlatform;
use crate::vm::accel::AccelChoice;
use crate::vm::net::Network;

/// Implements `ValueEnum` for a library enum: each variant with its
/// command-line name and help.
macro_rules! value_enum {
    ($ty:ty { $($variant:path => $name:literal : $help:literal),+ $(,)? }) => {
        impl ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($variant),+]
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(match self {
                    $($variant => PossibleValue::new($name).help($help)),+
                })
            }
        }
    };
}

value_enum!(AccelChoice {
    AccelChoice::Auto => "auto": "KVM if a probe boot works, else TCG",
    AccelChoice::Kvm => "kvm": "KVM, or fail",
    AccelChoice::Tcg => "tcg": "TCG (software emulation)",
});

value_enum!(Network {
    Network::None => "none": "Nothing but kiln's SSH",
    Network::Outbound => "outbound": "The internet and LAN, never the host itself (the default)",
    Network::Host => "host": "Outbound plus the host's loopback services at 10.0.2.2",
});

value_enum!(OnError {
    OnError::Cleanup => "cleanup": "Stop the VM, remove temporary files, keep the logs",
    OnError::Abort => "abort": "Keep the VM running and print how to get in; clean up on Ctrl-C",
});

value_enum!(OsPlatform {
    OsPlatform::Linux => "linux": "Linux",
    OsPlatform::Windows => "windows": "Windows",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for v in AccelChoice::value_variants() {
            let name = v.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(AccelChoice::from_str(&name, false).unwrap(), *v);
        }
        for v in Network::value_variants() {
            let name = v.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(name, v.name());
            assert_eq!(Network::from_str(&name, false).unwrap(), *v);
        }
        assert_eq!(OnError::from_str("abort", false).unwrap(), OnError::Abort);
        assert_eq!(
            OsPlatform::from_str("windows", false).unwrap(),
            OsPlatform::Windows
        );
    }
}
