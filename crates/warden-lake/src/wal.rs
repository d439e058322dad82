//! The write-ahead log: an append-only sequence of preallocated, zero-filled segment files under
//! `<lake>/wal/`, each `wal-<first seq>.log`. Owns framing, group-commit IO (write, then one
//! `fdatasync` for the whole batch), rotation and recovery.
//!
//! A segment starts with a 16-byte header (`WLAKWAL1` and the first seq, little-endian) followed by
//! frames `len u32 | crc32c u32 | seq u64 | payload`, little-endian, where the CRC-32C covers `len`,
//! `seq` and the payload, and the payload is an event's canonical bytes. A zero `len` ends a segment.
//! Recovery reads every segment in order, checks each frame's CRC and that seqs run on without a gap,
//! and truncates a torn tail of the *last* segment at the first bad frame (zero-filling the rest, then
//! `fdatasync`), so stale bytes can never be mistaken for frames later. A bad frame before the last
//! segment's tail is damage, not a torn write, and is reported, never skipped.
//!
//! Segments are preallocated by writing zeros (not `set_len`, which leaves holes whose first write
//! journals metadata on every `fdatasync`); the next one is prepared by a helper thread while the
//! current one fills. Files are created as `*.tmp`, synced, renamed, and the directory is synced.
//! Errors are returned as-is: the caller treats any write or sync error as fatal and never retries
//! (after a failed `fsync` Linux may have dropped the dirty pages).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

const MAGIC: &[u8; 8] = b"WLAKWAL1";
pub(crate) const HEADER_LEN: u64 = 16;
pub(crate) const FRAME_HEADER: usize = 16;
/// The largest payload a frame may hold.
pub(crate) const MAX_PAYLOAD: usize = 256 * 1024;

/// Damage found while reading the WAL that is not a torn tail.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WalError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("WAL segment `{path}` is damaged at byte {offset}: {reason}")]
    Damaged { path: PathBuf, offset: u64, reason: String },
}

/// One recovered frame.
pub(crate) struct Frame {
    pub(crate) seq: u64,
    pub(crate) payload: Vec<u8>,
}

/// What `Wal::open` found.
pub(crate) struct Recovered {
    pub(crate) frames: Vec<Frame>,
    /// `(segment, byte offset)` where a torn tail was cut off, if one was.
    pub(crate) truncated: Option<(PathBuf, u64)>,
}

struct Segment {
    path: PathBuf,
    file: File,
    /// Where the next frame goes.
    offset: u64,
    dirty: bool,
}

pub(crate) struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    current: Segment,
    /// Segments before `current`, oldest first: `(first seq, path)`.
    closed: Vec<(u64, PathBuf)>,
    /// A rotated-out segment still awaiting its final sync.
    retiring: Option<Segment>,
    pending: Vec<u8>,
    spare: Option<JoinHandle<io::Result<PathBuf>>>,
    spare_counter: u64,
}

pub(crate) fn segment_name(first_seq: u64) -> String {
    format!("wal-{first_seq:020}.log")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    name.strip_prefix("wal-")?.strip_suffix(".log")?.parse().ok()
}

/// `fsync` a directory, so that a create, rename or delete inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// How much of a spare segment is zero-filled between two yields of the preallocation thread.
const PREALLOC_CHUNK: usize = 64 << 10;

/// With yields, the spare is synced every this many bytes as it fills.
const PREALLOC_SYNC_EVERY: u64 = 1 << 20;

/// Writes a zero-filled file of `bytes` at `path` and syncs it.
///
/// With `yielding` (the spare, filled while the writer commits), the work is cut into short steps:
/// the thread gives up the CPU after every [`PREALLOC_CHUNK`] and syncs every
/// [`PREALLOC_SYNC_EVERY`]. Filling 64 MiB takes ~140 ms of CPU (fresh page-cache pages), and one
/// `fsync` of all of it spent up to 60 ms in the kernel submitting writeback; on a kernel without
/// preemption (`PREEMPT_NONE`) the writer, woken by a commit, waited behind either for milliseconds.
fn preallocate(path: &Path, bytes: u64, yielding: bool) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
    let zeros = vec![0u8; PREALLOC_CHUNK];
    let mut written = 0u64;
    while written < bytes {
        let n = (bytes - written).min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n])?;
        written += n as u64;
        if yielding {
            if written.is_multiple_of(PREALLOC_SYNC_EVERY) {
                f.sync_data()?;
            }
            std::thread::yield_now();
        }
    }
    f.sync_all()
}

/// Prepares the next segment on a thread of its own, at a lower priority, yielding as it goes.
fn spawn_spare(dir: &Path, n: u64, bytes: u64) -> JoinHandle<io::Result<PathBuf>> {
    let path = dir.join(format!("spare-{n}.tmp"));
    std::thread::Builder::new()
        .name("warden-lake-prealloc".to_owned())
        .spawn(move || {
            crate::lake::run_in_background("the WAL's preallocation thread");
            preallocate(&path, bytes, true).map(|()| path)
        })
        .unwrap_or_else(|e| std::thread::spawn(move || Err(e)))
}

impl Wal {
    /// Opens (or creates) the WAL in `dir`, recovering it. Frames with `seq < start_seq` are skipped
    /// (they are already sealed into Parquet); the first frame kept must be `start_seq`.
    pub(crate) fn open(dir: &Path, segment_bytes: u64, start_seq: u64) -> Result<(Wal, Recovered), WalError> {
        fs::create_dir_all(dir)?;
        let mut segments: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                fs::remove_file(entry.path())?;
            } else if let Some(first) = parse_segment_name(&name) {
                segments.push((first, entry.path()));
            }
        }
        segments.sort();
        let mut frames = Vec::new();
        let mut next = None::<u64>;
        let mut truncated = None;
        let mut last_offset = HEADER_LEN;
        let count = segments.len();
        for (i, (first, path)) in segments.iter().enumerate() {
            let is_last = i + 1 == count;
            let (end, torn) = read_segment(path, *first, is_last, true, &mut next, start_seq, &mut frames)?;
            if let Some(reason) = torn {
                if !is_last {
                    return Err(WalError::Damaged {
                        path: path.clone(),
                        offset: end,
                        reason,
                    });
                }
                tracing::warn!(segment = %path.display(), offset = end, %reason, "cutting off a torn WAL tail");
                zero_from(path, end)?;
                truncated = Some((path.clone(), end));
            }
            last_offset = end;
        }
        let wal_next = next.unwrap_or_else(|| segments.last().map_or(start_seq, |(first, _)| *first));
        let missing = |upto: u64| WalError::Damaged {
            path: dir.to_owned(),
            offset: 0,
            reason: format!(
                "events {start_seq}..{upto} are in neither the sealed segments nor the WAL; run `verify` on the lake"
            ),
        };
        match frames.first() {
            Some(f) if f.seq != start_seq => return Err(missing(f.seq)),
            None if wal_next > start_seq => return Err(missing(wal_next)),
            _ => {}
        }
        let mut wal = match segments.last() {
            Some((_, path)) => {
                let file = OpenOptions::new().read(true).write(true).open(path)?;
                let current = Segment {
                    path: path.clone(),
                    file,
                    offset: last_offset,
                    dirty: false,
                };
                let closed = segments[..count - 1].to_vec();
                Wal::with(dir, segment_bytes, current, closed)
            }
            None => {
                let current = create_segment(dir, start_seq, segment_bytes, None)?;
                Wal::with(dir, segment_bytes, current, Vec::new())
            }
        };
        if wal_next < start_seq {
            // Everything in the WAL is sealed already: start a fresh segment at `start_seq` and drop
            // the old ones, so numbering in the WAL stays gapless.
            wal.rotate_to(start_seq)?;
            wal.commit()?;
            let old: Vec<PathBuf> = wal.closed.iter().map(|(_, p)| p.clone()).collect();
            wal.remove(&old)?;
        }
        if wal.spare.is_none() {
            wal.spare = Some(spawn_spare(dir, wal.spare_counter, segment_bytes));
        }
        Ok((wal, Recovered { frames, truncated }))
    }

    fn with(dir: &Path, segment_bytes: u64, current: Segment, closed: Vec<(u64, PathBuf)>) -> Wal {
        Wal {
            dir: dir.to_owned(),
            segment_bytes,
            current,
            closed,
            retiring: None,
            pending: Vec::with_capacity(1 << 20),
            spare: None,
            spare_counter: 0,
        }
    }

    /// Adds one frame to the batch being built. It is written by `commit`.
    pub(crate) fn append(&mut self, seq: u64, payload: &[u8]) -> io::Result<()> {
        let need = (FRAME_HEADER + payload.len()) as u64;
        if self.current.offset + self.pending.len() as u64 + need > self.segment_bytes {
            self.flush_pending()?;
            self.rotate_to(seq)?;
        }
        encode_frame(&mut self.pending, seq, payload);
        Ok(())
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.current.file.write_all_at(&self.pending, self.current.offset)?;
        self.current.offset += self.pending.len() as u64;
        self.current.dirty = true;
        self.pending.clear();
        Ok(())
    }

    /// Writes the batch and makes it durable: one `fdatasync` per segment touched.
    pub(crate) fn commit(&mut self) -> io::Result<()> {
        self.flush_pending()?;
        if let Some(old) = self.retiring.take() {
            sync(&old)?;
        }
        if self.current.dirty {
            sync(&self.current)?;
            self.current.dirty = false;
        }
        Ok(())
    }

    /// Starts a new segment whose first frame will be `next_seq`. The caller must `commit` first if
    /// it needs what was written so far to be durable before the new segment exists.
    pub(crate) fn rotate_to(&mut self, next_seq: u64) -> io::Result<()> {
        self.flush_pending()?;
        let spare = match self.spare.take() {
            Some(handle) => match handle.join() {
                Ok(Ok(path)) => Some(path),
                Ok(Err(e)) => return Err(e),
                Err(_) => None,
            },
            None => None,
        };
        let new = create_segment(&self.dir, next_seq, self.segment_bytes, spare)?;
        self.spare_counter += 1;
        self.spare = Some(spawn_spare(&self.dir, self.spare_counter, self.segment_bytes));
        let old = std::mem::replace(&mut self.current, new);
        if let Some(first) = parse_segment_name(&old.path.file_name().unwrap_or_default().to_string_lossy()) {
            self.closed.push((first, old.path.clone()));
        }
        if old.dirty
            && let Some(prev) = self.retiring.replace(old)
        {
            sync(&prev)?;
        }
        Ok(())
    }

    /// Starts a new segment at `next_seq` (if the current one holds anything) and returns every
    /// segment before it, all of whose frames are `< next_seq`.
    pub(crate) fn cut(&mut self, next_seq: u64) -> io::Result<Vec<PathBuf>> {
        self.commit()?;
        if self.current.offset > HEADER_LEN {
            self.rotate_to(next_seq)?;
            self.commit()?;
        }
        Ok(self.closed.iter().map(|(_, p)| p.clone()).collect())
    }

    /// Deletes segments whose frames are all sealed into Parquet, then syncs the directory.
    pub(crate) fn remove(&mut self, paths: &[PathBuf]) -> io::Result<()> {
        for p in paths {
            match fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.closed.retain(|(_, p)| !paths.contains(p));
        sync_dir(&self.dir)
    }

    /// Waits for the helper thread, so no spare file is half-written when the lake closes.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.commit()?;
        if let Some(h) = self.spare.take() {
            let _ = h.join();
        }
        Ok(())
    }
}

/// Frames with the segment holding each, and where a torn tail starts if there is one.
pub(crate) type ReadOnly = (Vec<(PathBuf, Frame)>, Option<(PathBuf, u64)>);

/// Reads every frame with `seq >= start_seq` without changing anything on disk (for `verify`):
/// `(segment, frame)` pairs, and where a torn tail starts if there is one.
pub(crate) fn read_only(dir: &Path, start_seq: u64) -> Result<ReadOnly, WalError> {
    let mut segments: Vec<(u64, PathBuf)> = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry?;
                if let Some(first) = parse_segment_name(&entry.file_name().to_string_lossy()) {
                    segments.push((first, entry.path()));
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    segments.sort();
    let mut out = Vec::new();
    let mut torn = None;
    let mut next = None;
    let count = segments.len();
    for (i, (first, path)) in segments.iter().enumerate() {
        let is_last = i + 1 == count;
        let mut frames = Vec::new();
        let (end, bad) = read_segment(path, *first, is_last, false, &mut next, start_seq, &mut frames)?;
        out.extend(frames.into_iter().map(|f| (path.clone(), f)));
        if let Some(reason) = bad {
            if !is_last {
                return Err(WalError::Damaged {
                    path: path.clone(),
                    offset: end,
                    reason,
                });
            }
            torn = Some((path.clone(), end));
        }
    }
    Ok((out, torn))
}

/// Tests make `fdatasync` fail for segments under this directory.
#[cfg(test)]
pub(crate) static FAIL_SYNC_UNDER: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

fn sync(segment: &Segment) -> io::Result<()> {
    #[cfg(test)]
    if FAIL_SYNC_UNDER
        .lock()
        .map(|g| g.as_ref().is_some_and(|d| segment.path.starts_with(d)))
        .unwrap_or(false)
    {
        return Err(io::Error::other("injected fdatasync failure"));
    }
    segment.file.sync_data()
}

pub(crate) fn encode_frame(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let len = payload.len() as u32;
    let mut crc = crc32c::crc32c(&len.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &seq.to_le_bytes());
    crc = crc32c::crc32c_append(crc, payload);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Creates segment `first_seq` from a preallocated spare (or a fresh one), writes its header, syncs it
/// and the directory.
fn create_segment(dir: &Path, first_seq: u64, bytes: u64, spare: Option<PathBuf>) -> io::Result<Segment> {
    let tmp = match spare {
        Some(p) => p,
        None => {
            let p = dir.join("segment.tmp");
            preallocate(&p, bytes, false)?;
            p
        }
    };
    let path = dir.join(segment_name(first_seq));
    let file = OpenOptions::new().read(true).write(true).open(&tmp)?;
    let mut header = Vec::with_capacity(HEADER_LEN as usize);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&first_seq.to_le_bytes());
    file.write_all_at(&header, 0)?;
    file.sync_data()?;
    fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    Ok(Segment {
        path,
        file,
        offset: HEADER_LEN,
        dirty: false,
    })
}

/// Reads one segment's frames into `frames` (those with `seq >= start_seq`). Returns where the valid
/// frames end and, if they end at something other than zeros, why.
fn read_segment(
    path: &Path,
    first: u64,
    is_last: bool,
    repair: bool,
    next: &mut Option<u64>,
    start_seq: u64,
    frames: &mut Vec<Frame>,
) -> Result<(u64, Option<String>), WalError> {
    let damaged = |offset: u64, reason: String| WalError::Damaged {
        path: path.to_owned(),
        offset,
        reason,
    };
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    if data.len() < HEADER_LEN as usize || data[..HEADER_LEN as usize].iter().all(|&b| b == 0) {
        if is_last && !repair {
            return Ok((HEADER_LEN, None));
        }
        if is_last {
            // Renamed but the header never reached the disk: an empty segment; rewrite its header.
            let f = OpenOptions::new().write(true).open(path)?;
            let mut header = MAGIC.to_vec();
            header.extend_from_slice(&first.to_le_bytes());
            f.write_all_at(&header, 0)?;
            f.sync_data()?;
            return Ok((HEADER_LEN, None));
        }
        return Err(damaged(0, "the segment header is missing".to_owned()));
    }
    if &data[..8] != MAGIC {
        return Err(damaged(0, "not a WAL segment (bad magic)".to_owned()));
    }
    let header_first = u64::from_le_bytes(data[8..16].try_into().unwrap_or([0; 8]));
    if header_first != first {
        return Err(damaged(
            8,
            format!("header says first seq {header_first}, the file name says {first}"),
        ));
    }
    if let Some(n) = *next
        && n != first
    {
        return Err(damaged(
            0,
            format!("segment starts at seq {first} but the previous one ended before {n}"),
        ));
    }
    let mut off = HEADER_LEN as usize;
    let mut expected = first;
    loop {
        if data.len() - off < FRAME_HEADER {
            *next = Some(expected);
            let rest_zero = data[off..].iter().all(|&b| b == 0);
            return Ok((
                off as u64,
                (!rest_zero).then(|| "a frame header is cut short".to_owned()),
            ));
        }
        let len_bytes: [u8; 4] = data[off..off + 4].try_into().unwrap_or([0; 4]);
        let crc_bytes: [u8; 4] = data[off + 4..off + 8].try_into().unwrap_or([0; 4]);
        let seq_bytes: [u8; 8] = data[off + 8..off + 16].try_into().unwrap_or([0; 8]);
        let len = u32::from_le_bytes(len_bytes) as usize;
        let crc = u32::from_le_bytes(crc_bytes);
        let seq = u64::from_le_bytes(seq_bytes);
        if len == 0 && crc == 0 {
            *next = Some(expected);
            // Zeros: the end. Anything non-zero after it would be a torn write past a hole.
            let rest_zero = data[off..].iter().all(|&b| b == 0);
            return Ok((
                off as u64,
                (!rest_zero).then(|| "non-zero bytes after the last frame".to_owned()),
            ));
        }
        let end = off + FRAME_HEADER + len;
        let bad = if len > MAX_PAYLOAD {
            Some(format!("frame length {len} is over the {MAX_PAYLOAD}-byte limit"))
        } else if end > data.len() {
            Some("the frame runs past the end of the segment".to_owned())
        } else {
            let mut c = crc32c::crc32c(&len_bytes);
            c = crc32c::crc32c_append(c, &seq_bytes);
            c = crc32c::crc32c_append(c, &data[off + FRAME_HEADER..end]);
            if c != crc {
                Some(format!("CRC mismatch on the frame claiming seq {seq}"))
            } else if seq != expected {
                Some(format!("frame has seq {seq} where {expected} was expected"))
            } else {
                None
            }
        };
        if let Some(reason) = bad {
            *next = Some(expected);
            return Ok((off as u64, Some(reason)));
        }
        if seq >= start_seq {
            frames.push(Frame {
                seq,
                payload: data[off + FRAME_HEADER..end].to_vec(),
            });
        }
        expected += 1;
        off = end;
    }
}

/// Overwrites a segment with zeros from `offset` to its end and syncs it.
fn zero_from(path: &Path, offset: u64) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(offset))?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = len.saturating_sub(offset);
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 64 * 1024;

    fn payload(i: u64) -> Vec<u8> {
        format!("{{\"event\":{i},\"pad\":\"{}\"}}", "x".repeat((i % 50) as usize)).into_bytes()
    }

    fn write(dir: &Path, start: u64, n: u64) {
        let (mut wal, _) = Wal::open(dir, SEG, start).unwrap();
        for i in start..start + n {
            wal.append(i, &payload(i)).unwrap();
            if i % 7 == 0 {
                wal.commit().unwrap();
            }
        }
        wal.finish().unwrap();
    }

    fn seqs(r: &Recovered) -> Vec<u64> {
        r.frames.iter().map(|f| f.seq).collect()
    }

    #[test]
    fn frames_survive_reopen_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 0, 3000);
        let (_, rec) = Wal::open(dir.path(), SEG, 0).unwrap();
        assert_eq!(seqs(&rec), (0..3000).collect::<Vec<_>>());
        assert!(rec.truncated.is_none());
        for f in &rec.frames {
            assert_eq!(f.payload, payload(f.seq));
        }
        let n = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().unwrap() == "log")
            .count();
        assert!(n > 1, "3000 frames span several 64 KiB segments");
        // Reopen and append more: numbering continues.
        let (mut wal, rec) = Wal::open(dir.path(), SEG, 2990).unwrap();
        assert_eq!(seqs(&rec), (2990..3000).collect::<Vec<_>>());
        wal.append(3000, b"more").unwrap();
        wal.commit().unwrap();
        drop(wal);
        let (_, rec) = Wal::open(dir.path(), SEG, 0).unwrap();
        assert_eq!(rec.frames.last().unwrap().seq, 3000);
    }

    fn last_segment(dir: &Path) -> PathBuf {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        v.sort();
        v.pop().unwrap()
    }

    #[test]
    fn a_torn_tail_is_cut_at_the_first_bad_crc() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 0, 100);
        let seg = last_segment(dir.path());
        let (_, rec) = Wal::open(dir.path(), SEG, 0).unwrap();
        let last_start = {
            // Offset of the last frame: header + sum of earlier frames.
            let mut off = HEADER_LEN;
            for f in &rec.frames[..rec.frames.len() - 1] {
                off += (FRAME_HEADER + f.payload.len()) as u64;
            }
            off
        };
        // Flip a byte inside the last frame's payload: a torn write.
        let f = OpenOptions::new().read(true).write(true).open(&seg).unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, last_start + 20).unwrap();
        f.write_all_at(&[b[0] ^ 0xff], last_start + 20).unwrap();
        drop(f);
        let (mut wal, rec) = Wal::open(dir.path(), SEG, 0).unwrap();
        assert_eq!(seqs(&rec), (0..99).collect::<Vec<_>>());
        assert_eq!(rec.truncated.as_ref().unwrap().1, last_start);
        // The cut-off region is zeroed, and new frames continue at 99.
        wal.append(99, b"again").unwrap();
        wal.commit().unwrap();
        drop(wal);
        let (_, rec) = Wal::open(dir.path(), SEG, 0).unwrap();
        assert_eq!(rec.frames.len(), 100);
        assert_eq!(rec.frames[99].payload, b"again");
    }

    #[test]
    fn damage_before_the_last_segment_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 0, 3000);
        let mut segs: Vec<PathBuf> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        segs.sort();
        let f = OpenOptions::new().write(true).open(&segs[0]).unwrap();
        f.write_all_at(b"garbage!", 100).unwrap();
        drop(f);
        let err = Wal::open(dir.path(), SEG, 0).err().unwrap();
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn cut_and_remove_drop_sealed_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), SEG, 0).unwrap();
        for i in 0..10 {
            wal.append(i, &payload(i)).unwrap();
        }
        let closed = wal.cut(10).unwrap();
        assert_eq!(closed.len(), 1);
        wal.append(10, b"ten").unwrap();
        wal.commit().unwrap();
        wal.remove(&closed).unwrap();
        drop(wal);
        let (_, rec) = Wal::open(dir.path(), SEG, 10).unwrap();
        assert_eq!(seqs(&rec), vec![10]);
    }
}
