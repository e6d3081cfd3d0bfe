//! The OVF descriptor: written from a machine description and a profile
//! (`vsphere`, `workstation`, `virtualbox`), and parsed and checked against
//! the rules of the OVF 1.x schema (DMTF DSP0243 / DSP8023) and of the CIM
//! RASD/VSSD schemas it uses. Pure: no I/O here.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

/// The OVF 1.x envelope namespace.
pub const NS_OVF: &str = "http://schemas.dmtf.org/ovf/envelope/1";
/// CIM ResourceAllocationSettingData (the `Item` children).
pub const NS_RASD: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData";
/// CIM VirtualSystemSettingData (the `System` children).
pub const NS_VSSD: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData";
/// VMware's OVF extensions (`vmw:osType`, `vmw:Config`).
pub const NS_VMW: &str = "http://www.vmware.com/schema/ovf";
/// VirtualBox's OVF extensions (`vbox:OSType`).
pub const NS_VBOX: &str = "http://www.virtualbox.org/ovf/machine";
/// The `ovf:format` of a streamOptimized VMDK.
pub const VMDK_STREAM_FORMAT: &str =
    "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized";

/// The default VMware virtual hardware version: vmx-13 is ESXi/vSphere 6.5
/// (the oldest vSphere still met in the field, P10: vmx-14+ OVAs are
/// rejected by 6.5), imported by Workstation 14+ and Fusion 10+.
pub const DEFAULT_HW_VERSION: u32 = 13;

/// The network every NIC is connected to (vSphere's default port group).
const NETWORK: &str = "VM Network";

/// Errors of writing or reading a descriptor.
#[derive(Debug, thiserror::Error)]
pub enum OvfError {
    /// The text is not well-formed XML.
    #[error("not well-formed XML: {0}")]
    Xml(#[from] roxmltree::Error),
    /// A machine setting the chosen profile cannot express.
    #[error("{0}")]
    Unsupported(String),
    /// A machine name the descriptor cannot hold.
    #[error("the machine name `{}` {why}", crate::util::display::Escaped(name))]
    BadName {
        /// The name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A name that is not a profile, firmware, NIC or guest OS.
    #[error("unknown {what} `{given}` (known: {known})")]
    Unknown {
        /// What was being named.
        what: &'static str,
        /// The given name.
        given: String,
        /// The known names.
        known: &'static str,
    },
}

/// Defines a small enum with its command-line names.
macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident, $what:literal, $known:literal, { $($(#[$vm:meta])* $v:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
        pub enum $name { $($(#[$vm])* $v),+ }
        impl $name {
            /// The command-line name.
            pub fn name(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.name()) }
        }
        impl FromStr for $name {
            type Err = OvfError;
            fn from_str(s: &str) -> Result<Self, OvfError> {
                match s {
                    $($s => Ok($name::$v),)+
                    _ => Err(OvfError::Unknown { what: $what, given: s.to_string(), known: $known }),
                }
            }
        }
    };
}

named_enum!(
    /// Which hypervisor family the descriptor is written for.
    Profile, "OVF profile", "vsphere, workstation, virtualbox", {
        /// vSphere/ESXi: `vmx-N`, VMware device names, vmxnet3.
        #[default]
        Vsphere => "vsphere",
        /// VMware Workstation/Fusion: `vmx-N`, VMware device names, e1000.
        Workstation => "workstation",
        /// VirtualBox: `virtualbox-2.2`, a SATA (AHCI) controller, e1000.
        Virtualbox => "virtualbox",
    }
);

named_enum!(
    /// The firmware the guest boots with.
    Firmware, "firmware", "bios, efi", {
        /// Legacy BIOS.
        #[default]
        Bios => "bios",
        /// UEFI.
        Efi => "efi",
    }
);

named_enum!(
    /// The virtual NIC model.
    NicModel, "NIC model", "vmxnet3, e1000", {
        /// VMware's paravirtual NIC (needs a driver: Linux has it).
        #[default]
        Vmxnet3 => "vmxnet3",
        /// Intel e1000, emulated everywhere.
        E1000 => "e1000",
    }
);

named_enum!(
    /// The guest operating system, for OperatingSystemSection.
    GuestOs, "guest OS", "debian, ubuntu, rhel, linux", {
        /// Debian, 64-bit.
        #[default]
        Debian => "debian",
        /// Ubuntu, 64-bit.
        Ubuntu => "ubuntu",
        /// Red Hat Enterprise Linux and rebuilds, 64-bit.
        Rhel => "rhel",
        /// Any other 64-bit Linux.
        Linux => "linux",
    }
);

impl GuestOs {
    /// The CIM_OperatingSystem OSType value (OperatingSystemSection ovf:id).
    pub fn cim_id(self) -> u32 {
        match self {
            GuestOs::Debian => 96,
            GuestOs::Ubuntu => 94,
            GuestOs::Rhel => 80,
            GuestOs::Linux => 101,
        }
    }

    /// VMware's guest id (`vmw:osType`), ones ESXi 6.5 knows.
    pub fn vmware_id(self) -> &'static str {
        match self {
            GuestOs::Debian => "debian9_64Guest",
            GuestOs::Ubuntu => "ubuntu64Guest",
            GuestOs::Rhel => "rhel7_64Guest",
            GuestOs::Linux => "other3xLinux64Guest",
        }
    }

    /// VirtualBox's OS type name.
    pub fn virtualbox_id(self) -> &'static str {
        match self {
            GuestOs::Debian => "Debian_64",
            GuestOs::Ubuntu => "Ubuntu_64",
            GuestOs::Rhel => "RedHat_64",
            GuestOs::Linux => "Linux26_64",
        }
    }

    fn description(self) -> &'static str {
        match self {
            GuestOs::Debian => "Debian GNU/Linux (64-bit)",
            GuestOs::Ubuntu => "Ubuntu Linux (64-bit)",
            GuestOs::Rhel => "Red Hat Enterprise Linux (64-bit)",
            GuestOs::Linux => "Other Linux (64-bit)",
        }
    }
}

/// The virtual machine an OVF package describes, apart from its disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmSettings {
    /// The machine's name (`None`: the output file's base name).
    pub name: Option<String>,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The hypervisor family.
    pub profile: Profile,
    /// The VMware hardware version (`None`: [`DEFAULT_HW_VERSION`]).
    pub hw_version: Option<u32>,
    /// BIOS or UEFI.
    pub firmware: Firmware,
    /// The guest OS.
    pub os: GuestOs,
    /// The NIC model (`None`: vmxnet3 for vSphere, e1000 otherwise).
    pub nic: Option<NicModel>,
}

impl Default for VmSettings {
    fn default() -> Self {
        VmSettings {
            name: None,
            cpus: 2,
            memory_mib: 2048,
            profile: Profile::Vsphere,
            hw_version: None,
            firmware: Firmware::Bios,
            os: GuestOs::Debian,
            nic: None,
        }
    }
}

/// The package's disk file as the descriptor names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskFile {
    /// The file name, relative to the descriptor.
    pub href: String,
    /// The file's size in bytes.
    pub file_size: u64,
    /// The disk's virtual size in bytes.
    pub capacity: u64,
}

/// Escapes text for XML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// One RASD `Item`: its children, written in the alphabetical order the
/// CIM schema's sequence requires.
fn item(fields: &[(&str, String)]) -> String {
    let mut sorted: Vec<&(&str, String)> = fields.iter().collect();
    sorted.sort_by_key(|(k, _)| *k);
    let mut out = String::from("      <Item>\n");
    for (k, v) in sorted {
        out.push_str(&format!("        <rasd:{k}>{}</rasd:{k}>\n", esc(v)));
    }
    out.push_str("      </Item>\n");
    out
}

/// What the settings resolve to for a profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The NIC model.
    pub nic: NicModel,
    /// `vssd:VirtualSystemType`: `vmx-NN` or `virtualbox-2.2`.
    pub system_type: String,
}

/// Checks a machine name: not blank, and no control character in it (XML
/// 1.0 cannot hold most, and a terminal would run them).
pub fn check_name(name: &str) -> Result<(), OvfError> {
    let why = if name.trim().is_empty() {
        "is empty"
    } else if name.chars().any(crate::util::display::is_unsafe) {
        "holds control characters"
    } else {
        return Ok(());
    };
    Err(OvfError::BadName {
        name: name.to_string(),
        why,
    })
}

/// Checks that the profile can express the settings (done before any disk
/// is written) and resolves the NIC and the system type.
pub fn resolve(vm: &VmSettings) -> Result<Resolved, OvfError> {
    if let Some(name) = &vm.name {
        check_name(name)?;
    }
    if vm.cpus == 0 || vm.memory_mib == 0 {
        return Err(OvfError::Unsupported(
            "a machine needs at least 1 CPU and 1 MiB of memory".into(),
        ));
    }
    let hw = vm.hw_version.unwrap_or(DEFAULT_HW_VERSION);
    if !(4..=30).contains(&hw) {
        return Err(OvfError::Unsupported(format!(
            "hardware version {hw} is not a VMware hardware version (4 to 30; vSphere 6.5 is 13, 6.7 is 14, 7.0 is 17)"
        )));
    }
    let vbox = vm.profile == Profile::Virtualbox;
    if vbox && vm.firmware == Firmware::Efi {
        return Err(OvfError::Unsupported(
            "the virtualbox profile cannot say EFI: VirtualBox reads firmware only from its own machine section; use --firmware bios, or set EFI after import".into(),
        ));
    }
    let nic = vm.nic.unwrap_or(match vm.profile {
        Profile::Vsphere => NicModel::Vmxnet3,
        _ => NicModel::E1000,
    });
    if vbox && nic == NicModel::Vmxnet3 {
        return Err(OvfError::Unsupported(
            "VirtualBox has no vmxnet3 NIC; use --nic e1000".into(),
        ));
    }
    let system_type = if vbox {
        "virtualbox-2.2".to_string()
    } else {
        format!("vmx-{hw:02}")
    };
    Ok(Resolved { nic, system_type })
}

/// Writes the OVF 1.0 descriptor of a machine with one disk.
pub fn descriptor(vm: &VmSettings, name: &str, disk: &DiskFile) -> Result<String, OvfError> {
    let Resolved { nic, system_type } = resolve(vm)?;
    let vbox = vm.profile == Profile::Virtualbox;
    let name_x = esc(name);
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<Envelope xmlns=\"{NS_OVF}\" xmlns:ovf=\"{NS_OVF}\" xmlns:rasd=\"{NS_RASD}\" xmlns:vssd=\"{NS_VSSD}\" xmlns:vmw=\"{NS_VMW}\" xmlns:vbox=\"{NS_VBOX}\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" ovf:version=\"1.0\">\n"
    ));
    x.push_str(&format!(
        "  <References>\n    <File ovf:href=\"{}\" ovf:id=\"file1\" ovf:size=\"{}\"/>\n  </References>\n",
        esc(&disk.href),
        disk.file_size
    ));
    x.push_str(&format!(
        "  <DiskSection>\n    <Info>Virtual disk information</Info>\n    <Disk ovf:capacity=\"{}\" ovf:capacityAllocationUnits=\"byte\" ovf:diskId=\"vmdisk1\" ovf:fileRef=\"file1\" ovf:format=\"{VMDK_STREAM_FORMAT}\"/>\n  </DiskSection>\n",
        disk.capacity
    ));
    x.push_str(&format!(
        "  <NetworkSection>\n    <Info>The list of logical networks</Info>\n    <Network ovf:name=\"{NETWORK}\">\n      <Description>The {NETWORK} network</Description>\n    </Network>\n  </NetworkSection>\n"
    ));
    x.push_str(&format!(
        "  <VirtualSystem ovf:id=\"{name_x}\">\n    <Info>A virtual machine</Info>\n    <Name>{name_x}</Name>\n"
    ));
    let os = vm.os;
    if vbox {
        x.push_str(&format!(
            "    <OperatingSystemSection ovf:id=\"{}\">\n      <Info>The kind of installed guest operating system</Info>\n      <Description>{}</Description>\n      <vbox:OSType ovf:required=\"false\">{}</vbox:OSType>\n    </OperatingSystemSection>\n",
            os.cim_id(), os.description(), os.virtualbox_id()
        ));
    } else {
        x.push_str(&format!(
            "    <OperatingSystemSection ovf:id=\"{}\" vmw:osType=\"{}\">\n      <Info>The kind of installed guest operating system</Info>\n      <Description>{}</Description>\n    </OperatingSystemSection>\n",
            os.cim_id(), os.vmware_id(), os.description()
        ));
    }
    x.push_str(&format!(
        "    <VirtualHardwareSection>\n      <Info>Virtual hardware requirements</Info>\n      <System>\n        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>\n        <vssd:InstanceID>0</vssd:InstanceID>\n        <vssd:VirtualSystemIdentifier>{name_x}</vssd:VirtualSystemIdentifier>\n        <vssd:VirtualSystemType>{system_type}</vssd:VirtualSystemType>\n      </System>\n"
    ));
    let s = |v: &str| v.to_string();
    x.push_str(&item(&[
        ("AllocationUnits", s("hertz * 10^6")),
        ("Description", s("Number of Virtual CPUs")),
        ("ElementName", format!("{} virtual CPU(s)", vm.cpus)),
        ("InstanceID", s("1")),
        ("ResourceType", s("3")),
        ("VirtualQuantity", vm.cpus.to_string()),
    ]));
    x.push_str(&item(&[
        ("AllocationUnits", s("byte * 2^20")),
        ("Description", s("Memory Size")),
        ("ElementName", format!("{}MB of memory", vm.memory_mib)),
        ("InstanceID", s("2")),
        ("ResourceType", s("4")),
        ("VirtualQuantity", vm.memory_mib.to_string()),
    ]));
    x.push_str(&item(&if vbox {
        vec![
            ("Address", s("0")),
            ("Description", s("SATA Controller")),
            ("ElementName", s("sataController0")),
            ("InstanceID", s("3")),
            ("ResourceSubType", s("AHCI")),
            ("ResourceType", s("20")),
        ]
    } else {
        vec![
            ("Address", s("0")),
            ("Description", s("SCSI Controller")),
            ("ElementName", s("SCSI Controller 0")),
            ("InstanceID", s("3")),
            ("ResourceSubType", s("lsilogic")),
            ("ResourceType", s("6")),
        ]
    }));
    x.push_str(&item(&[
        ("AddressOnParent", s("0")),
        ("ElementName", s("Hard Disk 1")),
        ("HostResource", s("ovf:/disk/vmdisk1")),
        ("InstanceID", s("4")),
        ("Parent", s("3")),
        ("ResourceType", s("17")),
    ]));
    let nic_type = match nic {
        NicModel::Vmxnet3 => "VmxNet3",
        NicModel::E1000 => "E1000",
    };
    x.push_str(&item(&[
        ("AddressOnParent", s("7")),
        ("AutomaticAllocation", s("true")),
        ("Connection", s(NETWORK)),
        (
            "Description",
            format!("{nic_type} ethernet adapter on \"{NETWORK}\""),
        ),
        ("ElementName", s("Network adapter 1")),
        ("InstanceID", s("5")),
        ("ResourceSubType", s(nic_type)),
        ("ResourceType", s("10")),
    ]));
    if !vbox {
        x.push_str(&format!(
            "      <vmw:Config ovf:required=\"false\" vmw:key=\"firmware\" vmw:value=\"{}\"/>\n",
            vm.firmware
        ));
    }
    x.push_str("    </VirtualHardwareSection>\n  </VirtualSystem>\n</Envelope>\n");
    Ok(x)
}

/// A `File` of the References section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    /// `ovf:id`.
    pub id: String,
    /// `ovf:href`.
    pub href: String,
    /// `ovf:size`, when given and numeric.
    pub size: Option<u64>,
}

/// A `Disk` of the DiskSection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskRef {
    /// `ovf:diskId`.
    pub id: String,
    /// `ovf:fileRef`, when the disk has a file.
    pub file_ref: Option<String>,
    /// The capacity in bytes, when it parses.
    pub capacity: Option<u64>,
    /// `ovf:format`.
    pub format: Option<String>,
}

/// What a descriptor says, and what is wrong with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// The referenced files, in References order.
    pub files: Vec<FileRef>,
    /// The disks.
    pub disks: Vec<DiskRef>,
    /// `vssd:VirtualSystemType` of the first VirtualHardwareSection.
    pub system_type: Option<String>,
    /// Every rule the descriptor breaks, one line each.
    pub problems: Vec<String>,
}

/// Parses a capacity with its programmatic units (`byte`, `byte * 2^30`,
/// `byte * 10^9`; absent means bytes) into bytes.
pub fn capacity_bytes(capacity: &str, units: Option<&str>) -> Result<u64, String> {
    let n: u64 = capacity
        .trim()
        .parse()
        .map_err(|_| format!("capacity `{capacity}` is not a whole number"))?;
    let mult = match units.map(|u| u.split_whitespace().collect::<String>()) {
        None => 1,
        Some(u) if u == "byte" => 1,
        Some(u) => {
            let rest = u
                .strip_prefix("byte*")
                .ok_or_else(|| format!("capacity units `{u}` are not `byte` or `byte * B^N`"))?;
            let (base, exp) = rest
                .split_once('^')
                .ok_or_else(|| format!("capacity units `{u}` have no `^`"))?;
            let base: u64 = match base {
                "2" => 2,
                "10" => 10,
                _ => return Err(format!("capacity units `{u}`: the base must be 2 or 10")),
            };
            let exp: u32 = exp
                .parse()
                .map_err(|_| format!("capacity units `{u}`: bad exponent"))?;
            base.checked_pow(exp)
                .ok_or_else(|| format!("capacity units `{u}` overflow"))?
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("capacity {capacity} × {mult} overflows"))
}

type Node<'a, 'i> = roxmltree::Node<'a, 'i>;

fn ovf_attr<'a>(n: Node<'a, '_>, name: &str) -> Option<&'a str> {
    n.attribute((NS_OVF, name))
}

fn elements<'a, 'i>(n: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children().filter(|c| c.is_element())
}

fn is_ovf(n: Node<'_, '_>, name: &str) -> bool {
    n.tag_name().namespace() == Some(NS_OVF) && n.tag_name().name() == name
}

/// Sections must start with an `Info` element.
fn check_info(section: Node<'_, '_>, problems: &mut Vec<String>) {
    let first = elements(section).next();
    if !first.is_some_and(|f| is_ovf(f, "Info")) {
        problems.push(format!(
            "{} has no Info as its first element",
            section.tag_name().name()
        ));
    }
}

/// Parses a descriptor and checks it against the OVF 1.x rules: the
/// envelope namespace, References first, the sections before the one
/// VirtualSystem, each section's Info, References ↔ DiskSection ↔
/// VirtualHardwareSection consistency (fileRef, diskId, HostResource,
/// unique InstanceIDs, existing Parents, NIC connections), RASD elements in
/// schema order, capacities and sizes numeric, VirtualSystemType present,
/// and no OVF 2.0 items (StorageItem, EthernetPortItem: VMware rejects them).
pub fn check(xml: &str) -> Result<Checked, OvfError> {
    let doc = roxmltree::Document::parse(xml)?;
    let root = doc.root_element();
    let mut c = Checked::default();
    let p = &mut c.problems;
    if root.tag_name().name() != "Envelope" || root.tag_name().namespace() != Some(NS_OVF) {
        p.push(format!(
            "the root element is {{{}}}{}, not Envelope in {NS_OVF}",
            root.tag_name().namespace().unwrap_or(""),
            root.tag_name().name()
        ));
        return Ok(c);
    }
    // Envelope: References, then Sections, then the content, then Strings
    let children: Vec<Node> = elements(root).collect();
    if !children.first().is_some_and(|n| is_ovf(*n, "References")) {
        p.push("the Envelope's first element is not References".into());
    }
    let content_at = children
        .iter()
        .position(|n| is_ovf(*n, "VirtualSystem") || is_ovf(*n, "VirtualSystemCollection"));
    let contents = children
        .iter()
        .filter(|n| is_ovf(**n, "VirtualSystem") || is_ovf(**n, "VirtualSystemCollection"))
        .count();
    match contents {
        0 => p.push("the Envelope has no VirtualSystem".into()),
        1 => {}
        n => p.push(format!(
            "the Envelope has {n} VirtualSystem/VirtualSystemCollection elements; one is allowed"
        )),
    }
    if let Some(at) = content_at {
        for n in &children[at + 1..] {
            if !is_ovf(*n, "Strings") {
                p.push(format!(
                    "{} comes after the VirtualSystem; sections go before it",
                    n.tag_name().name()
                ));
            }
        }
    }
    // References
    let mut file_ids = HashSet::new();
    for r in children.iter().filter(|n| is_ovf(**n, "References")) {
        for f in elements(*r) {
            if !is_ovf(f, "File") {
                continue;
            }
            let (Some(id), Some(href)) = (ovf_attr(f, "id"), ovf_attr(f, "href")) else {
                p.push("a References/File lacks ovf:id or ovf:href".into());
                continue;
            };
            if !file_ids.insert(id.to_string()) {
                p.push(format!("file id `{id}` is used twice"));
            }
            let size = match ovf_attr(f, "size") {
                None => {
                    p.push(format!(
                        "file `{href}` has no ovf:size (vSphere needs it to check the upload)"
                    ));
                    None
                }
                Some(s) => match s.parse() {
                    Ok(v) => Some(v),
                    Err(_) => {
                        p.push(format!("file `{href}`: ovf:size `{s}` is not a number"));
                        None
                    }
                },
            };
            c.files.push(FileRef {
                id: id.into(),
                href: href.into(),
                size,
            });
        }
    }
    // DiskSection
    let disk_sections: Vec<Node> = children
        .iter()
        .copied()
        .filter(|n| is_ovf(*n, "DiskSection"))
        .collect();
    let mut disk_ids = HashSet::new();
    for ds in &disk_sections {
        check_info(*ds, p);
        for d in elements(*ds).filter(|d| is_ovf(*d, "Disk")) {
            let Some(id) = ovf_attr(d, "diskId") else {
                p.push("a Disk has no ovf:diskId".into());
                continue;
            };
            if !disk_ids.insert(id.to_string()) {
                p.push(format!("disk id `{id}` is used twice"));
            }
            let file_ref = ovf_attr(d, "fileRef").map(str::to_string);
            if let Some(r) = &file_ref {
                if !file_ids.contains(r) {
                    p.push(format!(
                        "disk `{id}` refers to file `{r}`, which References does not list"
                    ));
                }
            }
            let capacity = match ovf_attr(d, "capacity") {
                None => {
                    p.push(format!("disk `{id}` has no ovf:capacity"));
                    None
                }
                Some(cap) => match capacity_bytes(cap, ovf_attr(d, "capacityAllocationUnits")) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        p.push(format!("disk `{id}`: {e}"));
                        None
                    }
                },
            };
            c.disks.push(DiskRef {
                id: id.into(),
                file_ref,
                capacity,
                format: ovf_attr(d, "format").map(str::to_string),
            });
        }
    }
    // NetworkSection
    let mut networks = HashSet::new();
    for ns in children.iter().filter(|n| is_ovf(**n, "NetworkSection")) {
        check_info(*ns, p);
        for n in elements(*ns).filter(|n| is_ovf(*n, "Network")) {
            match ovf_attr(n, "name") {
                Some(name) => {
                    networks.insert(name.to_string());
                }
                None => p.push("a Network has no ovf:name".into()),
            }
        }
    }
    // the VirtualSystem(s)
    let mut used_disks = HashSet::new();
    for vs in root.descendants().filter(|n| is_ovf(*n, "VirtualSystem")) {
        if ovf_attr(vs, "id").is_none() {
            p.push("a VirtualSystem has no ovf:id".into());
        }
        if !elements(vs).next().is_some_and(|f| is_ovf(f, "Info")) {
            p.push("a VirtualSystem has no Info as its first element".into());
        }
        for os in elements(vs).filter(|n| is_ovf(*n, "OperatingSystemSection")) {
            check_info(os, p);
            match ovf_attr(os, "id").map(|v| v.parse::<u32>()) {
                Some(Ok(_)) => {}
                Some(Err(_)) => p.push("OperatingSystemSection's ovf:id is not a number".into()),
                None => p.push("OperatingSystemSection has no ovf:id".into()),
            }
        }
        let hws: Vec<Node> = elements(vs)
            .filter(|n| is_ovf(*n, "VirtualHardwareSection"))
            .collect();
        if hws.is_empty() {
            p.push("the VirtualSystem has no VirtualHardwareSection".into());
        }
        for hw in hws {
            let refs = Known {
                files: &file_ids,
                disks: &disk_ids,
                networks: &networks,
            };
            check_hardware(hw, &refs, &mut used_disks, &mut c.system_type, p);
        }
    }
    for d in &c.disks {
        if !used_disks.contains(&d.id) {
            p.push(format!(
                "disk `{}` is not attached by any VirtualHardwareSection item",
                d.id
            ));
        }
    }
    Ok(c)
}

/// The ids the envelope's sections declare.
struct Known<'a> {
    files: &'a HashSet<String>,
    disks: &'a HashSet<String>,
    networks: &'a HashSet<String>,
}

/// Checks one VirtualHardwareSection (see [`check`]); records the disks
/// its items attach and the first VirtualSystemType.
fn check_hardware(
    hw: Node<'_, '_>,
    known: &Known<'_>,
    used_disks: &mut HashSet<String>,
    first_system_type: &mut Option<String>,
    p: &mut Vec<String>,
) {
    let (file_ids, disk_ids, networks) = (known.files, known.disks, known.networks);
    check_info(hw, p);
    let system = elements(hw).find(|n| is_ovf(*n, "System"));
    let system_type = system.and_then(|s| {
        elements(s)
            .find(|n| {
                n.tag_name().namespace() == Some(NS_VSSD)
                    && n.tag_name().name() == "VirtualSystemType"
            })
            .and_then(|n| n.text())
            .map(|t| t.trim().to_string())
    });
    match &system_type {
        Some(t) if !t.is_empty() => {
            if first_system_type.is_none() {
                *first_system_type = Some(t.clone());
            }
        }
        _ => p.push("VirtualHardwareSection has no System/vssd:VirtualSystemType".into()),
    }
    if let Some(s) = system {
        check_cim_order(s, NS_VSSD, "System", p);
    }
    let vmware = system_type
        .as_deref()
        .is_some_and(|t| t.starts_with("vmx-"));
    let mut instance_ids = HashMap::new();
    let mut parents = Vec::new();
    for it in elements(hw) {
        let name = it.tag_name().name();
        if it.tag_name().namespace() != Some(NS_OVF) {
            continue;
        }
        if name == "StorageItem" || name == "EthernetPortItem" {
            if vmware {
                p.push(format!(
                    "{name} is an OVF 2.0 element that VMware products reject; use Item"
                ));
            }
            continue;
        }
        if name != "Item" {
            continue;
        }
        let field = |f: &str| {
            elements(it)
                .find(|n| n.tag_name().namespace() == Some(NS_RASD) && n.tag_name().name() == f)
                .map(|n| n.text().unwrap_or("").trim().to_string())
        };
        let label = field("ElementName").unwrap_or_else(|| "an Item".into());
        check_cim_order(it, NS_RASD, &label, p);
        for required in ["ElementName", "InstanceID", "ResourceType"] {
            if field(required).is_none() {
                p.push(format!("{label}: no rasd:{required}"));
            }
        }
        if let Some(id) = field("InstanceID") {
            if instance_ids.insert(id.clone(), label.clone()).is_some() {
                p.push(format!("InstanceID {id} is used twice"));
            }
        }
        if let Some(parent) = field("Parent") {
            parents.push((label.clone(), parent));
        }
        let rtype = field("ResourceType").and_then(|t| t.parse::<u32>().ok());
        if matches!(rtype, Some(3) | Some(4)) {
            match field("VirtualQuantity").map(|q| q.parse::<u64>()) {
                Some(Ok(q)) if q > 0 => {}
                _ => p.push(format!("{label}: no positive rasd:VirtualQuantity")),
            }
        }
        for res in elements(it).filter(|n| {
            n.tag_name().namespace() == Some(NS_RASD) && n.tag_name().name() == "HostResource"
        }) {
            let r = res.text().unwrap_or("").trim();
            if let Some(d) = r
                .strip_prefix("ovf:/disk/")
                .or_else(|| r.strip_prefix("/disk/"))
            {
                if disk_ids.contains(d) {
                    used_disks.insert(d.to_string());
                } else {
                    p.push(format!(
                        "{label}: HostResource {r} names a disk the DiskSection does not have"
                    ));
                }
            } else if let Some(f) = r
                .strip_prefix("ovf:/file/")
                .or_else(|| r.strip_prefix("/file/"))
            {
                if !file_ids.contains(f) {
                    p.push(format!(
                        "{label}: HostResource {r} names a file References does not list"
                    ));
                }
            }
        }
        if rtype == Some(17) && !elements(it).any(|n| n.tag_name().name() == "HostResource") {
            p.push(format!("{label}: a disk drive without rasd:HostResource"));
        }
        if rtype == Some(10) {
            if let Some(net) = field("Connection") {
                if !networks.contains(&net) {
                    p.push(format!(
                        "{label}: connected to network `{net}`, which NetworkSection does not list"
                    ));
                }
            }
        }
    }
    for (label, parent) in parents {
        if !instance_ids.contains_key(&parent) {
            p.push(format!(
                "{label}: rasd:Parent {parent} is not the InstanceID of any Item"
            ));
        }
    }
}

/// The CIM schemas (RASD, VSSD) declare their elements as a sequence in
/// alphabetical order; strict readers (ovftool, xmllint --schema) reject
/// any other order.
fn check_cim_order(parent: Node<'_, '_>, ns: &str, label: &str, p: &mut Vec<String>) {
    let names: Vec<&str> = elements(parent)
        .filter(|n| n.tag_name().namespace() == Some(ns))
        .map(|n| n.tag_name().name())
        .collect();
    if let Some(w) = names.windows(2).find(|w| w[0] > w[1]) {
        p.push(format!(
            "{label}: {} comes before {}; the CIM schema wants its elements in alphabetical order",
            w[0], w[1]
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk() -> DiskFile {
        DiskFile {
            href: "web-disk1.vmdk".into(),
            file_size: 12345,
            capacity: (37 << 20) + 12 * 1024,
        }
    }

    #[test]
    fn written_descriptors_pass_the_checker() {
        for profile in [Profile::Vsphere, Profile::Workstation, Profile::Virtualbox] {
            for nic in [None, Some(NicModel::E1000)] {
                let vm = VmSettings {
                    profile,
                    nic,
                    ..VmSettings::default()
                };
                let x = descriptor(&vm, "web & <db>", &disk()).unwrap();
                let c = check(&x).unwrap();
                assert_eq!(c.problems, Vec::<String>::new(), "{profile}\n{x}");
                assert_eq!(c.files.len(), 1);
                assert_eq!(c.files[0].size, Some(12345));
                assert_eq!(c.disks[0].capacity, Some(disk().capacity));
                assert_eq!(c.disks[0].file_ref.as_deref(), Some("file1"));
                assert!(!x.contains("StorageItem") && !x.contains("EthernetPortItem"));
                let st = c.system_type.unwrap();
                if profile == Profile::Virtualbox {
                    assert_eq!(st, "virtualbox-2.2");
                    assert!(x.contains("AHCI") && x.contains("Debian_64"));
                } else {
                    assert_eq!(st, "vmx-13");
                    assert!(x.contains("vmw:osType=\"debian9_64Guest\""), "{x}");
                    assert!(x.contains("ovf:id=\"96\""));
                    assert!(x.contains("lsilogic"));
                }
            }
        }
        let vm = VmSettings {
            hw_version: Some(17),
            firmware: Firmware::Efi,
            ..VmSettings::default()
        };
        let x = descriptor(&vm, "web", &disk()).unwrap();
        assert!(x.contains("vmx-17") && x.contains("vmw:value=\"efi\"") && x.contains("VmxNet3"));
    }

    #[test]
    fn unsupported_settings_are_errors() {
        let bad = [
            VmSettings {
                profile: Profile::Virtualbox,
                firmware: Firmware::Efi,
                ..VmSettings::default()
            },
            VmSettings {
                profile: Profile::Virtualbox,
                nic: Some(NicModel::Vmxnet3),
                ..VmSettings::default()
            },
            VmSettings {
                hw_version: Some(3),
                ..VmSettings::default()
            },
            VmSettings {
                cpus: 0,
                ..VmSettings::default()
            },
        ];
        for vm in bad {
            assert!(descriptor(&vm, "x", &disk()).is_err(), "{vm:?}");
        }
        assert!("vsphere".parse::<Profile>().is_ok());
        let e = "hyperv".parse::<Profile>().unwrap_err().to_string();
        assert!(e.contains("hyperv") && e.contains("workstation"), "{e}");
    }

    #[test]
    fn capacity_units() {
        assert_eq!(capacity_bytes("5", None), Ok(5));
        assert_eq!(capacity_bytes("16", Some("byte * 2^30")), Ok(16 << 30));
        assert_eq!(capacity_bytes("3", Some("byte*10^3")), Ok(3000));
        assert!(capacity_bytes("1.5", None).is_err());
        assert!(capacity_bytes("1", Some("bit")).is_err());
        assert!(capacity_bytes("1", Some("byte * 3^2")).is_err());
        assert!(capacity_bytes("99999999999", Some("byte * 2^60")).is_err());
    }

    fn problems_after(edit: impl Fn(String) -> String) -> Vec<String> {
        let x = descriptor(&VmSettings::default(), "web", &disk()).unwrap();
        let edited = edit(x.clone());
        assert_ne!(edited, x, "the edit changed nothing");
        check(&edited).unwrap().problems
    }

    fn assert_problem(edit: impl Fn(String) -> String, want: &str) {
        let p = problems_after(edit);
        assert!(p.iter().any(|l| l.contains(want)), "want `{want}` in {p:?}");
    }

    #[test]
    fn checker_finds_broken_rules() {
        assert_problem(
            |x| x.replace("ovf:fileRef=\"file1\"", "ovf:fileRef=\"file9\""),
            "refers to file `file9`",
        );
        assert_problem(
            |x| x.replace("ovf:/disk/vmdisk1", "ovf:/disk/vmdisk2"),
            "names a disk",
        );
        assert_problem(
            |x| x.replace("ovf:/disk/vmdisk1", "ovf:/disk/vmdisk2"),
            "not attached",
        );
        assert_problem(
            |x| x.replace("<rasd:InstanceID>5<", "<rasd:InstanceID>4<"),
            "InstanceID 4 is used twice",
        );
        assert_problem(
            |x| x.replace("<rasd:Parent>3<", "<rasd:Parent>9<"),
            "rasd:Parent 9",
        );
        assert_problem(
            |x| x.replace("ovf:capacity=\"", "ovf:capacity=\"x"),
            "not a whole number",
        );
        assert_problem(|x| x.replace(" ovf:size=\"12345\"", ""), "no ovf:size");
        assert_problem(
            |x| x.replace("ovf:size=\"12345\"", "ovf:size=\"big\""),
            "not a number",
        );
        assert_problem(
            |x| {
                x.replace(
                    "        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>\n",
                    "",
                )
            },
            "VirtualSystemType",
        );
        assert_problem(
            |x| x.replace(NS_OVF, "http://schemas.dmtf.org/ovf/envelope/2"),
            "not Envelope",
        );
        // DiskSection after the VirtualSystem
        assert_problem(
            |x| {
                let start = x.find("  <DiskSection>").unwrap();
                let end = x.find("</DiskSection>\n").unwrap() + "</DiskSection>\n".len();
                let section = x[start..end].to_string();
                let mut y = x.replace(&section, "");
                y = y.replace("</Envelope>", &format!("{section}</Envelope>"));
                y
            },
            "DiskSection comes after the VirtualSystem",
        );
        // rasd elements out of order
        assert_problem(
            |x| {
                x.replace(
                    "        <rasd:AddressOnParent>0</rasd:AddressOnParent>\n        <rasd:ElementName>Hard Disk 1</rasd:ElementName>\n",
                    "        <rasd:ElementName>Hard Disk 1</rasd:ElementName>\n        <rasd:AddressOnParent>0</rasd:AddressOnParent>\n",
                )
            },
            "alphabetical",
        );
        assert_problem(
            |x| {
                x.replace("<Item>", "<StorageItem>")
                    .replace("</Item>", "</StorageItem>")
            },
            "OVF 2.0",
        );
        assert_problem(
            |x| x.replace("<rasd:Connection>VM Network<", "<rasd:Connection>LAN<"),
            "network `LAN`",
        );
        assert_problem(
            |x| x.replace("<Info>Virtual disk information</Info>", ""),
            "DiskSection has no Info",
        );
        assert!(matches!(check("<Envelope"), Err(OvfError::Xml(_))));
        let p = check("<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\"/>")
            .unwrap()
            .problems;
        assert!(p.iter().any(|l| l.contains("no VirtualSystem")), "{p:?}");
    }
}
