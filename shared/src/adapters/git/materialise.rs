//! Writes a fetched commit's tree into the job directory under the checkout rules of
//! [`crate::domain::checkout`]: every path checked before anything touches the disk, files
//! created new (`O_CREAT|O_EXCL`, so never through an existing file or link), symlinks,
//! submodules, LFS pointers and oversized files recorded, nothing executed or configured.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use gix_hash::{ObjectId, oid};
use gix_object::{FindExt, FindHeader};

use super::FetchError;
use crate::domain::checkout::{Checkout, CheckoutError, CheckoutLimits, Decision, EntryKind, Recorded, safe_path};

/// Git's mode for a tree entry that is a directory.
const TREE_MODE: u16 = 0o040000;
/// Bytes of a symbolic link's target kept for the record.
const MAX_LINK_TARGET: u64 = 4096;
/// A blob at least this large cannot be an LFS pointer (see `checkout::is_lfs_pointer`).
const LFS_POINTER_MAX: u64 = 1024;

/// What was written and what was only recorded.
#[derive(Debug, Default)]
pub(super) struct Written {
    pub(super) files: u64,
    pub(super) bytes: u64,
    pub(super) recorded: Vec<(String, Recorded)>,
}

/// Writes the tree of `commit` into `tree_dir`, which must not exist yet.
pub(super) fn materialise(
    objects: &gix_odb::Handle,
    commit: &oid,
    tree_dir: &Path,
    limits: CheckoutLimits,
    interrupt: &AtomicBool,
) -> Result<Written, FetchError> {
    let mut buf = Vec::new();
    let root = objects.find_commit(commit, &mut buf).map_err(|_| FetchError::CommitNotFound)?.tree();
    DirBuilder::new().mode(0o700).create(tree_dir)?;
    let mut checkout = Checkout::new(limits);
    let mut written = Written::default();
    let mut pending = vec![(String::new(), root)];
    while let Some((dir, tree)) = pending.pop() {
        for (name, mode, id) in entries(objects, &tree, &mut buf)? {
            if interrupt.load(Ordering::Relaxed) {
                return Err(FetchError::Timeout);
            }
            let path = join(&dir, &name)?;
            if mode == TREE_MODE {
                let path = safe_path(&path, &limits)?;
                create(DirBuilder::new().mode(0o700).create(tree_dir.join(&path)), &path)?;
                pending.push((path, id));
                continue;
            }
            let mode = u32::from(mode);
            let blob = match EntryKind::from_mode(mode) {
                Some(EntryKind::Symlink) => Some(Blob::read(objects, &id, MAX_LINK_TARGET, &mut buf)?),
                Some(EntryKind::File | EntryKind::Executable) => {
                    Some(Blob::read(objects, &id, LFS_POINTER_MAX - 1, &mut buf)?)
                }
                Some(EntryKind::Gitlink) | None => None,
            };
            let (size, head) = blob.as_ref().map_or((0, &[][..]), |b| (b.size, b.head.as_slice()));
            match checkout.decide(&path, mode, size, head)? {
                Decision::Record(path, why) => written.recorded.push((path, why)),
                Decision::Write(path) => {
                    let data = objects.find_blob(&id, &mut buf).map_err(|_| malformed())?.data;
                    create(write_new(&tree_dir.join(&path), data), &path)?;
                    written.files += 1;
                    written.bytes += data.len() as u64;
                }
            }
        }
    }
    Ok(written)
}

/// A tree's entries as owned values (the buffer is reused for the blobs below them).
fn entries(
    objects: &gix_odb::Handle,
    tree: &oid,
    buf: &mut Vec<u8>,
) -> Result<Vec<(Vec<u8>, u16, ObjectId)>, FetchError> {
    objects
        .find_tree_iter(tree, buf)
        .map_err(|_| malformed())?
        .map(|entry| entry.map(|e| (e.filename.to_vec(), e.mode.value(), e.oid.to_owned())).map_err(|_| malformed()))
        .collect()
}

/// `dir/name`, refusing names that are not one UTF-8 path component.
fn join(dir: &str, name: &[u8]) -> Result<String, FetchError> {
    let lossy = || CheckoutError::UnsafePath(String::from_utf8_lossy(name).chars().take(200).collect());
    let name = std::str::from_utf8(name).map_err(|_| lossy())?;
    if name.contains('/') {
        return Err(lossy().into());
    }
    Ok(if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") })
}

/// A blob's size and, when small enough, its content (for the LFS check or a link target).
struct Blob {
    size: u64,
    head: Vec<u8>,
}

impl Blob {
    fn read(objects: &gix_odb::Handle, id: &oid, load_up_to: u64, buf: &mut Vec<u8>) -> Result<Self, FetchError> {
        let header = objects.try_header(id).map_err(|_| malformed())?.ok_or_else(malformed)?;
        if header.kind != gix_object::Kind::Blob {
            return Err(malformed());
        }
        let head = if header.size <= load_up_to {
            objects.find_blob(id, buf).map_err(|_| malformed())?.data.to_vec()
        } else {
            Vec::new()
        };
        Ok(Self { size: header.size, head })
    }
}

fn malformed() -> FetchError {
    FetchError::Malformed
}

/// Creates `path` with `data`; an existing entry (a duplicate name in a hostile tree) fails.
fn write_new(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(data)
}

/// A name the tree holds twice is an unsafe tree, not a disk problem.
fn create(result: io::Result<()>, path: &str) -> Result<(), FetchError> {
    match result {
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            Err(CheckoutError::UnsafePath(path.chars().take(200).collect()).into())
        }
        other => other.map_err(FetchError::from),
    }
}
