//! The vocabulary shared by every driver: power states, power actions, boot
//! devices and the capabilities a BMC reports.

use std::fmt;

/// The power state a BMC reports for its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerState {
    /// The server has power.
    On,
    /// The server is off.
    Off,
    /// The BMC reports a transition towards `On` (Redfish `PoweringOn`).
    PoweringOn,
    /// The BMC reports a transition towards `Off` (Redfish `PoweringOff`).
    PoweringOff,
}

impl PowerState {
    /// True for the states a BMC reports while power is changing.
    pub fn is_transitional(self) -> bool {
        matches!(self, Self::PoweringOn | Self::PoweringOff)
    }

    /// The state this one settles into (`PoweringOn` → `On`).
    pub fn settled(self) -> Self {
        match self {
            Self::On | Self::PoweringOn => Self::On,
            Self::Off | Self::PoweringOff => Self::Off,
        }
    }
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::On => "power on",
            Self::Off => "power off",
            Self::PoweringOn => "powering on",
            Self::PoweringOff => "powering off",
        })
    }
}

/// A power command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerAction {
    /// Power on.
    On,
    /// Hard power off, at once.
    Off,
    /// Ask the OS to shut down (ACPI power button).
    SoftOff,
    /// Hard reset.
    Reboot,
    /// Ask the OS to restart.
    SoftReboot,
    /// Power off, then on again.
    PowerCycle,
}

impl PowerAction {
    /// Every action, in a stable order.
    pub const ALL: [Self; 6] = [
        Self::On,
        Self::Off,
        Self::SoftOff,
        Self::Reboot,
        Self::SoftReboot,
        Self::PowerCycle,
    ];

    /// The power state the server ends in once the action is done.
    pub fn end_state(self) -> PowerState {
        match self {
            Self::Off | Self::SoftOff => PowerState::Off,
            Self::On | Self::Reboot | Self::SoftReboot | Self::PowerCycle => PowerState::On,
        }
    }
}

impl fmt::Display for PowerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::On => "power on",
            Self::Off => "power off",
            Self::SoftOff => "soft power off",
            Self::Reboot => "reboot",
            Self::SoftReboot => "soft reboot",
            Self::PowerCycle => "power cycle",
        })
    }
}

/// A boot device the server can be told to boot from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BootDevice {
    /// Network boot.
    Pxe,
    /// The local disk.
    Disk,
    /// The optical drive (or virtual media CD).
    Cdrom,
    /// The firmware setup screen.
    Bios,
}

impl BootDevice {
    /// Every device, in a stable order.
    pub const ALL: [Self; 4] = [Self::Pxe, Self::Disk, Self::Cdrom, Self::Bios];
}

impl fmt::Display for BootDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pxe => "pxe",
            Self::Disk => "disk",
            Self::Cdrom => "cdrom",
            Self::Bios => "bios",
        })
    }
}

/// The boot override a BMC reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootSetting {
    /// The override device, or `None` when no override is set.
    pub device: Option<BootDevice>,
    /// True when the override applies to every boot, not only the next one.
    pub persistent: bool,
}

/// What a BMC can do, learned from the BMC where the protocol says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Power actions the BMC accepts.
    pub power_actions: Vec<PowerAction>,
    /// Boot devices the BMC accepts as an override.
    pub boot_devices: Vec<BootDevice>,
    /// True when the BMC can inject a diagnostic interrupt (NMI).
    pub nmi: bool,
}

impl Capabilities {
    /// True when `action` is supported.
    pub fn supports(&self, action: PowerAction) -> bool {
        self.power_actions.contains(&action)
    }
}
