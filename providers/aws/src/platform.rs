//! Which CPU and C library a student's VM has, and whether the worker binaries labctl
//! uploads can run there: their architecture and the newest glibc version they need are
//! read from their ELF headers, and compared with the instance type's CPU and what the
//! image is known to ship, before anything is planned.

use std::path::Path;

use object::{Architecture, Object, ObjectSection};

/// A VM's CPU architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arch {
    X86_64,
    Arm64,
}

impl Arch {
    /// The architecture of an EC2 instance type: Graviton families carry a `g` after their
    /// generation (`t4g`, `m7g`, `c7gn`, `x2gd`, `g5g`), everything else is x86-64.
    pub fn of_instance_type(instance_type: &str) -> Self {
        let family = instance_type.split('.').next().unwrap_or_default();
        let attributes = family.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        let attributes = attributes.trim_start_matches(|c: char| c.is_ascii_digit());
        if attributes.split('-').next().unwrap_or_default().contains('g') {
            Self::Arm64
        } else {
            Self::X86_64
        }
    }

    /// How Ubuntu names it in image names.
    pub fn ubuntu(self) -> &'static str {
        match self {
            Self::X86_64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }

    /// Its name as Rust (`std::env::consts::ARCH`) and Linux call it.
    pub fn rust_name(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Arm64 => "aarch64",
        }
    }

    fn rust_target(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64-unknown-linux-gnu",
            Self::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// Its name in image names other than Ubuntu's.
    fn other_name(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Arm64 => "aarch64",
        }
    }

    fn other(self) -> Self {
        match self {
            Self::X86_64 => Self::Arm64,
            Self::Arm64 => Self::X86_64,
        }
    }

    /// An instance type of this architecture, for hints.
    fn example_instance_type(self) -> &'static str {
        match self {
            Self::X86_64 => "t3.large",
            Self::Arm64 => "t4g.large",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.other_name())
    }
}

/// The image labctl pins when the lab names none: Ubuntu 24.04 LTS, published by Canonical
/// (the newest build of that release).
pub(crate) fn default_image(arch: Arch) -> String {
    format!("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{}-server-*", arch.ubuntu())
}

/// The glibc (major, minor) that images named like this ship: the releases labctl knows.
fn image_glibc(image: &str) -> Option<(u32, u32)> {
    const KNOWN: [(&str, (u32, u32)); 7] = [
        ("ubuntu-noble-24.04", (2, 39)),
        ("ubuntu-jammy-22.04", (2, 35)),
        ("ubuntu-focal-20.04", (2, 31)),
        ("debian-13-", (2, 41)),
        ("debian-12-", (2, 36)),
        ("al2023-ami-", (2, 34)),
        ("amzn2-ami-", (2, 26)),
    ];
    KNOWN.iter().find(|(name, _)| image.contains(name)).map(|(_, v)| *v)
}

/// What a binary needs of the machine that runs it.
#[derive(Debug, PartialEq)]
struct Needs {
    arch: Option<Arch>,
    /// The newest `GLIBC_x.y` symbol version it links against; `None` if static.
    glibc: Option<(u32, u32)>,
}

fn needs(bytes: &[u8]) -> Result<Needs, String> {
    let file = object::File::parse(bytes).map_err(|e| format!("not an ELF executable ({e})"))?;
    let arch = match file.architecture() {
        Architecture::X86_64 => Some(Arch::X86_64),
        Architecture::Aarch64 => Some(Arch::Arm64),
        _ => None,
    };
    let dynstr = file.section_by_name(".dynstr").and_then(|s| s.data().ok()).unwrap_or_default();
    let glibc = dynstr
        .split(|b| *b == 0)
        .filter_map(|s| std::str::from_utf8(s).ok()?.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(str::parse::<u32>);
            Some((parts.next()?.ok()?, parts.next()?.ok()?))
        })
        .max();
    Ok(Needs { arch, glibc })
}

/// Checks that each binary in `bin_dir` named in `names` runs on `instance_type` VMs booted
/// from `image`. `Ok` holds warnings (what cannot be told); `Err` says what does not fit,
/// and the fix.
pub(crate) fn check(
    bin_dir: &Path,
    names: &[&str],
    instance_type: &str,
    image: &str,
) -> Result<Vec<String>, String> {
    let arch = Arch::of_instance_type(instance_type);
    if image.contains(arch.other().ubuntu()) || image.contains(arch.other().other_name()) {
        return Err(format!(
            "[student.compute] image `{image}` is for {} VMs, but {instance_type} VMs are {arch}: \
             choose an {arch} image, or leave `image` out for Ubuntu 24.04 on the instance type's CPU",
            arch.other()
        ));
    }
    let mut warnings = vec![];
    for name in names {
        let path = bin_dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| {
            format!(
                "cannot read the worker binary {}: {e} (build the workspace, or set LABCTL_WORKER_BIN_DIR)",
                path.display()
            )
        })?;
        let needs = needs(&bytes).map_err(|e| format!("the worker binary {} is {e}", path.display()))?;
        let rebuild = |target: &str| {
            format!(
                "build them with `cargo build --release --target {target} -p labctl-mapreduce -p labctl-scheduler` \
                 and set LABCTL_WORKER_BIN_DIR to target/{target}/release"
            )
        };
        if needs.arch != Some(arch) {
            let (built, instead) = match needs.arch {
                Some(a) => {
                    (a.to_string(), format!("an {a} instance type (e.g. {})", a.example_instance_type()))
                }
                None => ("another CPU".to_owned(), "another instance type".to_owned()),
            };
            return Err(format!(
                "the worker binary {} is built for {built}, but {instance_type} VMs are {arch}: {}, \
                 or choose {instead}",
                path.display(),
                rebuild(arch.rust_target()),
            ));
        }
        let Some((major, minor)) = needs.glibc else { continue };
        match image_glibc(image) {
            Some(has) if has < (major, minor) => {
                return Err(format!(
                    "the worker binary {} needs glibc {major}.{minor}, but image `{image}` has glibc {}.{}: \
                     leave `image` out for Ubuntu 24.04 (glibc 2.39), or {}",
                    path.display(),
                    has.0,
                    has.1,
                    rebuild(&arch.rust_target().replace("-gnu", "-musl"))
                ))
            }
            Some(_) => {}
            None => warnings.push(format!(
                "cannot tell which glibc image `{image}` has: the worker binary {name} needs glibc {major}.{minor} or newer"
            )),
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graviton_families_are_arm64() {
        for arm in ["t4g.large", "m7g.xlarge", "c7gn.medium", "x2gd.large", "g5g.xlarge", "im4gn.large"] {
            assert_eq!(Arch::of_instance_type(arm), Arch::Arm64, "{arm}");
        }
        for x86 in ["t3.large", "m5.large", "g4dn.xlarge", "m7i-flex.large", "c6a.large", "p4d.24xlarge"] {
            assert_eq!(Arch::of_instance_type(x86), Arch::X86_64, "{x86}");
        }
    }

    #[test]
    fn known_images_have_known_glibcs() {
        assert_eq!(image_glibc(&default_image(Arch::X86_64)), Some((2, 39)));
        assert_eq!(image_glibc("amzn2-ami-hvm-*-x86_64-gp2"), Some((2, 26)));
        assert_eq!(image_glibc("ami-0123456789abcdef0"), None);
    }

    /// This test's own executable is a dynamically linked ELF for the machine running it.
    #[test]
    fn what_a_binary_needs_is_read_from_its_elf() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let needs = needs(&me).unwrap();
        let arch = if cfg!(target_arch = "aarch64") { Arch::Arm64 } else { Arch::X86_64 };
        assert_eq!(needs.arch, Some(arch));
        assert!(needs.glibc.is_some_and(|v| v >= (2, 17)), "{needs:?}");
        assert!(super::needs(b"#!/bin/sh\n").is_err());
    }
}
