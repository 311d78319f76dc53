//! Disk and clock faults for one node process: an `LD_PRELOAD` layer
//! (`tests/faults/dynkv_faults.c`, compiled here with `cc` the first time a
//! cluster asks for it) plus what the harness does around a kill.
//!
//! A node started under the layer ([`crate::ClusterOptions::with_fault_layer`])
//! gets three paths in its environment:
//!
//! - its data dir (the layer acts on files under it only);
//! - a **manifest**, append-only, where the layer writes one line per sync
//!   point (`S <dev> <ino> <size>`: a successful `fsync`/`fdatasync` of a
//!   regular file, with its length before the call) and one per file whose
//!   last name went away (`D <dev> <ino>`: `unlink`, `rename` over it);
//! - a 4 KiB **control page** the layer maps shared and reads on every call:
//!   a disk-full flag and a wall-clock offset, changed by the harness while
//!   the node runs.
//!
//! A **power cut** ([`drop_unsynced`]) happens to a killed node: every file
//! under the data dir is cut back to its last synced length (0 if it never
//! was synced), or with [`Unsynced::KeepRandomPrefix`] to a random length
//! between that and its current one (some written-back pages survived, the
//! last record may be torn). The manifest is then rewritten to say that what
//! is left is durable. See `docs/CHAOS.md` for how faithful this is.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The C source of the layer.
pub const SOURCE: &str = include_str!("../faults/dynkv_faults.c");

/// `"DKVF"` little-endian: the layer ignores a control page without it.
const CONTROL_MAGIC: u32 = 0x4656_4b44;
const CONTROL_SIZE: usize = 4096;
const OFF_DISK_FULL: u64 = 4;
const OFF_CLOCK: u64 = 8;

/// The compiled layer (`libdynkv_faults.so`), built once per process into
/// `$TMPDIR/dynkv-faults-<hash of the source>/` (or `$DYNKV_FAULTS_SO`).
pub fn layer_path() -> Result<PathBuf, String> {
    static SO: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    SO.get_or_init(build_layer).clone()
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn build_layer() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("DYNKV_FAULTS_SO") {
        return Ok(PathBuf::from(p));
    }
    let dir = std::env::temp_dir().join(format!("dynkv-faults-{:016x}", fnv1a(SOURCE)));
    let so = dir.join("libdynkv_faults.so");
    if so.exists() {
        return Ok(so);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let src = dir.join("dynkv_faults.c");
    std::fs::write(&src, SOURCE).map_err(|e| format!("{}: {e}", src.display()))?;
    // Parallel test processes may build it at once: each into its own file,
    // then an atomic rename.
    let tmp = dir.join(format!("libdynkv_faults.so.{}", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = std::process::Command::new(&cc)
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
        .arg(&tmp)
        .arg(&src)
        .arg("-ldl")
        .output()
        .map_err(|e| format!("cannot run `{cc}` to build the fault layer: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{cc}` failed to build the fault layer:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::rename(&tmp, &so).map_err(|e| format!("{}: {e}", so.display()))?;
    Ok(so)
}

/// One node's fault files.
#[derive(Clone, Debug)]
pub struct NodeFaults {
    /// The layer to preload.
    pub layer: PathBuf,
    /// The node's data dir, as the layer compares paths (canonical).
    pub data_dir: PathBuf,
    /// The sync-point manifest.
    pub manifest: PathBuf,
    /// The control page.
    pub control: PathBuf,
}

impl NodeFaults {
    /// Creates the manifest and control page in `dir` for a node whose data
    /// lives in `data_dir` (which need not exist yet; its parent must).
    pub fn create(layer: PathBuf, dir: &Path, data_dir: &Path) -> std::io::Result<NodeFaults> {
        std::fs::create_dir_all(dir)?;
        let parent = data_dir.parent().unwrap_or(Path::new("/")).canonicalize()?;
        let data_dir = parent.join(data_dir.file_name().unwrap_or_default());
        let manifest = dir.join("sync-manifest");
        let control = dir.join("control");
        std::fs::write(&manifest, b"")?;
        let mut page = vec![0u8; CONTROL_SIZE];
        page[..4].copy_from_slice(&CONTROL_MAGIC.to_le_bytes());
        std::fs::write(&control, &page)?;
        Ok(NodeFaults {
            layer,
            data_dir,
            manifest,
            control,
        })
    }

    /// The environment a node process runs with.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), self.layer.display().to_string()),
            (
                "DYNKV_FAULTS_DATA".into(),
                self.data_dir.display().to_string(),
            ),
            (
                "DYNKV_FAULTS_MANIFEST".into(),
                self.manifest.display().to_string(),
            ),
            (
                "DYNKV_FAULTS_CONTROL".into(),
                self.control.display().to_string(),
            ),
        ]
    }

    fn poke(&self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.control)?;
        f.write_all_at(bytes, offset)
    }

    /// Turns the full disk on or off (takes effect on the node's next write).
    pub fn set_disk_full(&self, on: bool) -> std::io::Result<()> {
        self.poke(OFF_DISK_FULL, &u32::from(on).to_le_bytes())
    }

    /// Sets the node's wall-clock offset (a step of its clock, at once).
    pub fn set_clock_offset_ms(&self, offset_ms: i64) -> std::io::Result<()> {
        self.poke(OFF_CLOCK, &(offset_ms * 1_000_000).to_le_bytes())
    }

    /// The flags in force: (disk full, clock offset in ms).
    pub fn state(&self) -> std::io::Result<(bool, i64)> {
        let page = std::fs::read(&self.control)?;
        let full = u32::from_le_bytes(page[4..8].try_into().expect("4 bytes")) != 0;
        let ns = i64::from_le_bytes(page[8..16].try_into().expect("8 bytes"));
        Ok((full, ns / 1_000_000))
    }

    /// The synced length of every file the manifest knows, by (dev, inode).
    pub fn synced_lengths(&self) -> std::io::Result<HashMap<(u64, u64), u64>> {
        let text = std::fs::read_to_string(&self.manifest)?;
        let mut out = HashMap::new();
        for line in text.lines() {
            let f: Vec<u64> = line
                .get(2..)
                .unwrap_or("")
                .split(' ')
                .filter_map(|x| x.parse().ok())
                .collect();
            match (line.as_bytes().first(), f.as_slice()) {
                (Some(b'S'), [dev, ino, size]) => {
                    out.insert((*dev, *ino), *size);
                }
                (Some(b'D'), [dev, ino]) => {
                    out.remove(&(*dev, *ino));
                }
                // A torn last line (there should be none: each is one write).
                _ => {}
            }
        }
        Ok(out)
    }

    /// Forgets every sync point (after the data dir was wiped).
    pub fn reset_manifest(&self) -> std::io::Result<()> {
        std::fs::write(&self.manifest, b"")
    }
}

/// What a power cut keeps of the data written since a file's last sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsynced {
    /// Nothing: every file is cut back to its last synced length.
    DropAll,
    /// A random prefix of it, per file (seeded): as if some dirty pages had
    /// been written back before the cut; a record may be torn in half.
    KeepRandomPrefix(u64),
}

/// One file a power cut shortened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CutFile {
    /// Path relative to the data dir.
    pub name: String,
    /// Length before the cut.
    pub before: u64,
    /// Length after it.
    pub after: u64,
    /// Length at its last sync (0: never synced).
    pub synced: u64,
}

/// What a power cut did to one node's data dir.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PowerCutReport {
    /// Regular files under the data dir.
    pub files: usize,
    /// The ones that lost bytes.
    pub cut: Vec<CutFile>,
}

impl PowerCutReport {
    /// Bytes lost in all.
    pub fn bytes_dropped(&self) -> u64 {
        self.cut.iter().map(|c| c.before - c.after).sum()
    }

    /// One line for logs and histories: `dropped 1234 B from 2 of 9 files:
    /// 000004.log 13281→2048 (synced 2048), LOG 69486→0 (never synced)`.
    pub fn summary(&self) -> String {
        let files: Vec<String> = self
            .cut
            .iter()
            .map(|c| {
                let synced = if c.synced == 0 {
                    "never synced".to_string()
                } else {
                    format!("synced {}", c.synced)
                };
                format!("{} {}→{} ({synced})", c.name, c.before, c.after)
            })
            .collect();
        format!(
            "dropped {} B from {} of {} files{}{}",
            self.bytes_dropped(),
            self.cut.len(),
            self.files,
            if files.is_empty() { "" } else { ": " },
            files.join(", ")
        )
    }
}

fn regular_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let t = entry.file_type()?;
        if t.is_dir() {
            regular_files(&entry.path(), out)?;
        } else if t.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// A small deterministic generator (splitmix64): the harness has no `rand`.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The power cut itself, on a node that is not running: cuts every file
/// under the data dir back to what was synced, then records what is left as
/// durable.
pub fn drop_unsynced(f: &NodeFaults, keep: Unsynced) -> std::io::Result<PowerCutReport> {
    let synced = f.synced_lengths()?;
    let mut files = Vec::new();
    regular_files(&f.data_dir, &mut files)?;
    files.sort();
    let mut rng = match keep {
        Unsynced::KeepRandomPrefix(seed) => seed,
        Unsynced::DropAll => 0,
    };
    let mut report = PowerCutReport {
        files: files.len(),
        cut: Vec::new(),
    };
    let mut manifest = Vec::new();
    for path in &files {
        let meta = std::fs::symlink_metadata(path)?;
        let len = meta.len();
        let durable = synced
            .get(&(meta.dev(), meta.ino()))
            .copied()
            .unwrap_or(0)
            .min(len);
        let after = match keep {
            Unsynced::DropAll => durable,
            Unsynced::KeepRandomPrefix(_) => durable + splitmix(&mut rng) % (len - durable + 1),
        };
        if after < len {
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)?
                .set_len(after)?;
            report.cut.push(CutFile {
                name: path
                    .strip_prefix(&f.data_dir)
                    .unwrap_or(path)
                    .display()
                    .to_string(),
                before: len,
                after,
                synced: durable,
            });
        }
        writeln!(manifest, "S {} {} {after}", meta.dev(), meta.ino())?;
    }
    std::fs::write(&f.manifest, manifest)?;
    Ok(report)
}
