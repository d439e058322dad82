//! The RFC 9162 Merkle tree over the lake's events: leaf and node hashing, the incremental root the
//! writer keeps (`Frontier`), inclusion, consistency and range proofs, and their verification.
//!
//! Leaf hash = SHA-256(0x00 ‖ canonical event bytes); node hash = SHA-256(0x01 ‖ left ‖ right); the tree
//! over `n` leaves splits at the largest power of two smaller than `n` (RFC 9162 §2.1.1). Proof
//! generation asks a `Subtrees` for subtree hashes: every leaf hash in memory, or `BlockHashes`, the
//! roots of aligned 65,536-leaf blocks with leaves fetched on demand, as the lake keeps its tree;
//! verification needs only the proof, so an auditor can run it offline. Nothing here does IO.

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

/// Why a proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not inside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("consistency proof asked from size {from} to the smaller size {to}")]
    SizesBackwards { from: u64, to: u64 },
    #[error("the proof has {got} hashes where {want} were expected")]
    WrongLength { got: usize, want: usize },
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    #[error("range [{start}, {end}) is empty or does not fit a tree of size {size}")]
    BadRange { start: u64, end: u64, size: u64 },
    #[error("{got} leaf hashes given for a range of {want}")]
    WrongLeafCount { got: usize, want: u64 },
    #[error("{0}")]
    Source(String),
}

/// SHA-256(0x00 ‖ data): the hash of one leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// SHA-256(0x01 ‖ left ‖ right): the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The Merkle tree hash of `leaves` (RFC 9162 MTH).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [one] => *one,
        _ => {
            let k = split(leaves.len() as u64) as usize;
            let (l, r) = leaves.split_at(k);
            node_hash(&root(l), &root(r))
        }
    }
}

/// The incremental state of a growing tree: the roots of its perfect subtrees, largest first. Appending
/// a leaf and computing the root cost O(log n).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `(height, hash)` of each perfect subtree, heights strictly decreasing.
    nodes: Vec<(u32, Hash)>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    /// The frontier of a tree with these leaves.
    pub fn from_leaves(leaves: &[Hash]) -> Self {
        let mut f = Self::new();
        for leaf in leaves {
            f.push(*leaf);
        }
        f
    }

    /// The frontier of a tree kept as block roots.
    pub fn from_blocks(tree: &BlockHashes) -> Self {
        let mut f = Self::new();
        let height = tree.block().trailing_zeros();
        for block in tree.blocks() {
            f.push_node(height, *block);
        }
        for leaf in tree.recent() {
            f.push(*leaf);
        }
        f
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        self.push_node(0, leaf);
    }

    /// Appends a perfect subtree of `2^height` leaves (the size so far must be a multiple of it).
    fn push_node(&mut self, height: u32, hash: Hash) {
        let mut node = (height, hash);
        while let Some(&(height, hash)) = self.nodes.last() {
            if height != node.0 {
                break;
            }
            self.nodes.pop();
            node = (height + 1, node_hash(&hash, &node.1));
        }
        self.nodes.push(node);
        self.size += 1 << height;
    }

    /// The root of the tree so far (RFC 9162 MTH of every pushed leaf).
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else {
            return empty_root();
        };
        for (_, hash) in iter {
            acc = node_hash(hash, &acc);
        }
        acc
    }
}

/// Where proof generation gets the hash of a subtree `[lo, hi)`. Only nodes of the RFC 9162 tree
/// are asked for: `lo` is a multiple of the largest power of two not above `hi - lo`.
pub trait Subtrees {
    /// MTH of the leaves `[lo, hi)` (`lo < hi`); an error says why the leaves could not be had.
    fn subtree(&mut self, lo: u64, hi: u64) -> Result<Hash, String>;
}

/// Every leaf hash in memory.
pub struct Leaves<'a>(pub &'a [Hash]);

impl Subtrees for Leaves<'_> {
    fn subtree(&mut self, lo: u64, hi: u64) -> Result<Hash, String> {
        self.0
            .get(lo as usize..hi as usize)
            .map(root)
            .ok_or_else(|| format!("leaves {lo}..{hi} are beyond the {} known", self.0.len()))
    }
}

/// Leaves per block of the lake's `BlockHashes` tree.
pub const BLOCK_LEAVES: u64 = 1 << 16;

/// A growing tree kept as the roots of its complete aligned blocks of `block` leaves (a power of two;
/// the lake uses `BLOCK_LEAVES`) and the leaves of the incomplete last block: 32 bytes per block
/// instead of 32 per leaf. A node of the tree at least a block wide starts on a block boundary and,
/// unless it is the rightmost, ends on one: it is a tree over whole blocks (RFC 9162 splits `k`
/// blocks exactly where it splits `k` leaves). A narrower node never crosses a block boundary, so it
/// needs the leaves of one block only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHashes {
    block: u64,
    blocks: Vec<Hash>,
    recent: Vec<Hash>,
    /// The incremental tree of `recent`, so completing a block costs O(log n), not a block's hashes.
    partial: Frontier,
}

impl BlockHashes {
    /// An empty tree with blocks of `block` leaves (rounded up to a power of two).
    pub fn new(block: u64) -> Self {
        BlockHashes {
            block: block.max(1).next_power_of_two(),
            blocks: Vec::new(),
            recent: Vec::new(),
            partial: Frontier::new(),
        }
    }

    /// From the roots of the first `blocks.len()` blocks and the leaves after them; `None` when
    /// `recent` is a whole block or more.
    pub fn from_parts(block: u64, blocks: Vec<Hash>, recent: Vec<Hash>) -> Option<Self> {
        let mut me = BlockHashes::new(block);
        if recent.len() as u64 >= me.block {
            return None;
        }
        me.blocks = blocks;
        me.partial = Frontier::from_leaves(&recent);
        me.recent = recent;
        Some(me)
    }

    /// Leaves per block.
    pub fn block(&self) -> u64 {
        self.block
    }

    /// Leaves in the tree.
    pub fn len(&self) -> u64 {
        self.blocks.len() as u64 * self.block + self.recent.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty() && self.recent.is_empty()
    }

    pub fn push(&mut self, leaf: Hash) {
        self.recent.push(leaf);
        self.partial.push(leaf);
        if self.recent.len() as u64 == self.block {
            self.blocks.push(self.partial.root());
            self.partial = Frontier::new();
            self.recent.clear();
        }
    }

    /// The roots of the complete blocks, in order.
    pub fn blocks(&self) -> &[Hash] {
        &self.blocks
    }

    /// The leaves of the incomplete last block.
    pub fn recent(&self) -> &[Hash] {
        &self.recent
    }

    /// The leaf hash at `index` if it is in the incomplete last block.
    pub fn recent_leaf(&self, index: u64) -> Option<Hash> {
        let base = self.blocks.len() as u64 * self.block;
        index
            .checked_sub(base)
            .and_then(|i| self.recent.get(i as usize))
            .copied()
    }

    /// A `Subtrees` over this tree that asks `fetch(block)` for the leaves of a complete block
    /// when a proof needs a subtree inside it (each block is fetched once, and checked against its
    /// root).
    pub fn subtrees<F>(&self, fetch: F) -> BlockSubtrees<'_, F>
    where
        F: FnMut(u64) -> Result<Vec<Hash>, String>,
    {
        BlockSubtrees {
            tree: self,
            fetch,
            fetched: std::collections::HashMap::new(),
        }
    }
}

/// See `BlockHashes::subtrees`.
pub struct BlockSubtrees<'a, F> {
    tree: &'a BlockHashes,
    fetch: F,
    fetched: std::collections::HashMap<u64, Vec<Hash>>,
}

impl<F> BlockSubtrees<'_, F>
where
    F: FnMut(u64) -> Result<Vec<Hash>, String>,
{
    /// The root of the first `size` leaves.
    pub fn root(&mut self, size: u64) -> Result<Hash, String> {
        if size == 0 {
            return Ok(empty_root());
        }
        self.subtree(0, size)
    }
}

impl<F> Subtrees for BlockSubtrees<'_, F>
where
    F: FnMut(u64) -> Result<Vec<Hash>, String>,
{
    fn subtree(&mut self, lo: u64, hi: u64) -> Result<Hash, String> {
        let tree = self.tree;
        if lo >= hi || hi > tree.len() {
            return Err(format!(
                "subtree {lo}..{hi} is not inside a tree of {} leaves",
                tree.len()
            ));
        }
        let bl = tree.block;
        let (first, end) = (lo / bl, hi.div_ceil(bl));
        if lo.is_multiple_of(bl) && hi.is_multiple_of(bl) {
            return Ok(root(&tree.blocks[first as usize..end as usize]));
        }
        if end - first > 1 {
            let k = split(hi - lo);
            let l = self.subtree(lo, lo + k)?;
            let r = self.subtree(lo + k, hi)?;
            return Ok(node_hash(&l, &r));
        }
        let base = first * bl;
        let leaves: &[Hash] = if first == tree.blocks.len() as u64 {
            &tree.recent
        } else {
            if !self.fetched.contains_key(&first) {
                let leaves = (self.fetch)(first)?;
                if leaves.len() as u64 != bl || root(&leaves) != tree.blocks[first as usize] {
                    return Err(format!(
                        "the events {base}..{} do not hash to the log's block root",
                        base + bl
                    ));
                }
                self.fetched.insert(first, leaves);
            }
            &self.fetched[&first]
        };
        Ok(root(&leaves[(lo - base) as usize..(hi - base) as usize]))
    }
}

/// The inclusion proof of leaf `index` in the tree formed by the first `size` of `leaves` (RFC 9162
/// §2.1.3.1), leaf-side hash first.
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    if size > leaves.len() as u64 {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    inclusion_proof_in(&mut Leaves(leaves), index, size)
}

/// `inclusion_proof` over any `Subtrees`.
pub fn inclusion_proof_in(t: &mut (impl Subtrees + ?Sized), index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(t, index, 0, size, &mut out)?;
    Ok(out)
}

fn path(t: &mut (impl Subtrees + ?Sized), m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) -> Result<(), ProofError> {
    if hi - lo <= 1 {
        return Ok(());
    }
    let k = split(hi - lo);
    if m < lo + k {
        path(t, m, lo, lo + k, out)?;
        out.push(t.subtree(lo + k, hi).map_err(ProofError::Source)?);
    } else {
        path(t, m, lo + k, hi, out)?;
        out.push(t.subtree(lo, lo + k).map_err(ProofError::Source)?);
    }
    Ok(())
}

/// Checks that `leaf` is at `index` in the tree of `size` whose root is `expected_root` (RFC 9162
/// §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    expected_root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut fn_ = index;
    let mut sn = size - 1;
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: inclusion_len(index, size),
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want: inclusion_len(index, size),
        });
    }
    if &r != expected_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

fn inclusion_len(index: u64, size: u64) -> usize {
    let mut n = 0;
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            hi = lo + k;
        } else {
            lo += k;
        }
        n += 1;
    }
    n
}

/// The consistency proof between the trees of the first `from` and the first `to` leaves (RFC 9162
/// §2.1.4.1). Empty when `from` is 0 or equals `to`.
pub fn consistency_proof(leaves: &[Hash], from: u64, to: u64) -> Result<Vec<Hash>, ProofError> {
    if to > leaves.len() as u64 && from <= to {
        return Err(ProofError::IndexOutOfRange {
            index: to,
            size: leaves.len() as u64,
        });
    }
    consistency_proof_in(&mut Leaves(leaves), from, to)
}

/// `consistency_proof` over any `Subtrees` holding at least `to` leaves.
pub fn consistency_proof_in(t: &mut (impl Subtrees + ?Sized), from: u64, to: u64) -> Result<Vec<Hash>, ProofError> {
    if from > to {
        return Err(ProofError::SizesBackwards { from, to });
    }
    let mut out = Vec::new();
    if from > 0 && from < to {
        subproof(t, from, 0, to, true, &mut out)?;
    }
    Ok(out)
}

fn subproof(
    t: &mut (impl Subtrees + ?Sized),
    m: u64,
    lo: u64,
    hi: u64,
    b: bool,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = hi - lo;
    if m == n {
        if !b {
            out.push(t.subtree(lo, hi).map_err(ProofError::Source)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(t, m, lo, lo + k, b, out)?;
        out.push(t.subtree(lo + k, hi).map_err(ProofError::Source)?);
    } else {
        subproof(t, m - k, lo + k, hi, false, out)?;
        out.push(t.subtree(lo, lo + k).map_err(ProofError::Source)?);
    }
    Ok(())
}

/// Checks that the tree of size `to` with root `root_to` extends the tree of size `from` with root
/// `root_from` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    from: u64,
    to: u64,
    root_from: &Hash,
    root_to: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if from > to {
        return Err(ProofError::SizesBackwards { from, to });
    }
    if from == to {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: 0,
            });
        }
        return if root_from == root_to {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if from == 0 {
        // Every tree extends the empty tree; the proof must be empty.
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: 0,
            });
        }
        return Ok(());
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if from.is_power_of_two() {
        path.insert(0, *root_from);
    }
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength { got: 0, want: 1 });
    };
    let mut fn_ = from - 1;
    let mut sn = to - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut fr = *first;
    let mut sr = *first;
    for c in rest {
        if sn == 0 {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: proof.len().saturating_sub(1),
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want: proof.len() + 1,
        });
    }
    if &fr != root_from || &sr != root_to {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The range proof for leaves `[start, end)` in the tree of `size`: the roots of the maximal subtrees
/// of the tree that lie wholly outside the range, in the order a left-to-right descent meets them.
/// With every leaf of the range, they recompute the root, so the range is proven complete and in order.
pub fn range_proof(leaves: &[Hash], start: u64, end: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    if size > leaves.len() as u64 {
        return Err(ProofError::BadRange { start, end, size });
    }
    range_proof_in(&mut Leaves(leaves), start, end, size)
}

/// `range_proof` over any `Subtrees` holding at least `size` leaves.
pub fn range_proof_in(
    t: &mut (impl Subtrees + ?Sized),
    start: u64,
    end: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    if start >= end || end > size {
        return Err(ProofError::BadRange { start, end, size });
    }
    let mut out = Vec::new();
    range_walk(t, 0, size, start, end, &mut out)?;
    Ok(out)
}

fn range_walk(
    t: &mut (impl Subtrees + ?Sized),
    lo: u64,
    hi: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    if hi <= start || lo >= end {
        out.push(t.subtree(lo, hi).map_err(ProofError::Source)?);
        return Ok(());
    }
    if hi - lo == 1 {
        return Ok(());
    }
    let k = split(hi - lo);
    range_walk(t, lo, lo + k, start, end, out)?;
    range_walk(t, lo + k, hi, start, end, out)
}

/// The root of the tree of `size` given every leaf hash of `[start, end)` and the range proof.
pub fn root_from_range(
    start: u64,
    end: u64,
    size: u64,
    range_leaves: &[Hash],
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if start >= end || end > size {
        return Err(ProofError::BadRange { start, end, size });
    }
    if range_leaves.len() as u64 != end - start {
        return Err(ProofError::WrongLeafCount {
            got: range_leaves.len(),
            want: end - start,
        });
    }
    let mut proof_iter = proof.iter();
    let got = range_rebuild(0, size, start, end, range_leaves, &mut proof_iter, proof.len())?;
    let rest = proof_iter.count();
    if rest != 0 {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want: proof.len() - rest,
        });
    }
    Ok(got)
}

fn range_rebuild(
    lo: u64,
    hi: u64,
    start: u64,
    end: u64,
    leaves: &[Hash],
    proof: &mut std::slice::Iter<'_, Hash>,
    proof_len: usize,
) -> Result<Hash, ProofError> {
    if hi <= start || lo >= end {
        return proof.next().copied().ok_or(ProofError::WrongLength {
            got: proof_len,
            want: proof_len + 1,
        });
    }
    if hi - lo == 1 {
        return leaves
            .get((lo - start) as usize)
            .copied()
            .ok_or(ProofError::WrongLeafCount {
                got: leaves.len(),
                want: end - start,
            });
    }
    let k = split(hi - lo);
    let l = range_rebuild(lo, lo + k, start, end, leaves, proof, proof_len)?;
    let r = range_rebuild(lo + k, hi, start, end, leaves, proof, proof_len)?;
    Ok(node_hash(&l, &r))
}

/// Hex of a hash, for messages and JSON.
pub fn to_hex(hash: &Hash) -> String {
    hex(hash)
}

/// Lowercase hex of `bytes`: the one encoder of the crate (hashes, key ids, event ids).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// A hash from 64 hex digits.
pub fn from_hex(text: &str) -> Option<Hash> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(s: &str) -> Hash {
        from_hex(s).unwrap()
    }

    fn bytes(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The leaves and roots of the transparency-dev/merkle reference vectors (RFC 6962 hashing).
    fn vector_leaves() -> Vec<Hash> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|s| leaf_hash(&bytes(s)))
        .collect()
    }

    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn roots_match_reference_vectors() {
        let leaves = vector_leaves();
        assert_eq!(
            empty_root(),
            h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        let mut f = Frontier::new();
        for (i, want) in ROOTS.iter().enumerate() {
            assert_eq!(root(&leaves[..=i]), h(want), "size {}", i + 1);
            f.push(leaves[i]);
            assert_eq!(f.root(), h(want), "frontier size {}", i + 1);
        }
    }

    #[test]
    fn inclusion_proofs_match_reference_vectors() {
        let leaves = vector_leaves();
        // (1-based leaf, size, proof) as in the reference vectors.
        let cases: [(u64, u64, &[&str]); 4] = [
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                3,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                2,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (leaf, size, want) in cases {
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            let got = inclusion_proof(&leaves, leaf - 1, size).unwrap();
            assert_eq!(got, want, "leaf {leaf} size {size}");
            let r = h(ROOTS[size as usize - 1]);
            verify_inclusion(leaf - 1, size, &leaves[leaf as usize - 1], &got, &r).unwrap();
            // Corruptions are refused.
            assert!(verify_inclusion(leaf, size, &leaves[leaf as usize - 1], &got, &r).is_err());
            assert!(verify_inclusion(leaf - 1, size * 2, &leaves[leaf as usize - 1], &got, &r).is_err());
            assert!(verify_inclusion(leaf - 1, size, &leaves[leaf as usize - 1], &got[1..], &r).is_err());
            let mut longer = got.clone();
            longer.push(r);
            assert!(verify_inclusion(leaf - 1, size, &leaves[leaf as usize - 1], &longer, &r).is_err());
            for i in 0..got.len() {
                let mut bad = got.clone();
                bad[i][0] ^= 8;
                assert!(verify_inclusion(leaf - 1, size, &leaves[leaf as usize - 1], &bad, &r).is_err());
            }
        }
    }

    #[test]
    fn consistency_proofs_match_reference_vectors() {
        let leaves = vector_leaves();
        let cases: [(u64, u64, &[&str]); 5] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
            (
                6,
                7,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (from, to, want) in cases {
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            let got = consistency_proof(&leaves, from, to).unwrap();
            assert_eq!(got, want, "{from} -> {to}");
            let (r1, r2) = (h(ROOTS[from as usize - 1]), h(ROOTS[to as usize - 1]));
            verify_consistency(from, to, &r1, &r2, &got).unwrap();
            if !got.is_empty() {
                assert!(verify_consistency(from, to, &r2, &r1, &got).is_err());
                assert!(verify_consistency(from - 1, to, &r1, &r2, &got).is_err());
                assert!(verify_consistency(from, to, &r1, &r2, &got[..got.len() - 1]).is_err());
                assert!(verify_consistency(from, to, &r1, &r2, &[]).is_err());
                for i in 0..got.len() {
                    let mut bad = got.clone();
                    bad[i][0] ^= 16;
                    assert!(verify_consistency(from, to, &r1, &r2, &bad).is_err());
                }
            }
        }
    }

    #[test]
    fn a_block_that_does_not_hash_to_its_root_is_refused() {
        let leaves = leaves_n(20);
        let mut tree = BlockHashes::new(8);
        for l in &leaves {
            tree.push(*l);
        }
        let mut t = tree.subtrees(|k| {
            let mut v = leaves[k as usize * 8..(k as usize + 1) * 8].to_vec();
            v[3] = leaf_hash(b"forged");
            Ok(v)
        });
        let err = inclusion_proof_in(&mut t, 3, 20).unwrap_err();
        assert!(err.to_string().contains("events 0..8 do not hash"), "{err}");
    }

    fn leaves_n(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&(i as u64).to_be_bytes())).collect()
    }

    proptest! {
        #[test]
        fn frontier_matches_recursive_root(n in 0usize..300) {
            let leaves = leaves_n(n);
            prop_assert_eq!(Frontier::from_leaves(&leaves).root(), root(&leaves));
        }

        #[test]
        fn inclusion_roundtrip(size in 1u64..200, seed in 0u64..1000) {
            let leaves = leaves_n(size as usize);
            let index = seed % size;
            let proof = inclusion_proof(&leaves, index, size).unwrap();
            let r = root(&leaves);
            prop_assert!(verify_inclusion(index, size, &leaves[index as usize], &proof, &r).is_ok());
            let other = leaf_hash(b"other");
            prop_assert!(verify_inclusion(index, size, &other, &proof, &r).is_err());
        }

        #[test]
        fn consistency_roundtrip(to in 1u64..200, seed in 0u64..1000) {
            let leaves = leaves_n(to as usize);
            let from = seed % (to + 1);
            let proof = consistency_proof(&leaves, from, to).unwrap();
            let (r1, r2) = (root(&leaves[..from as usize]), root(&leaves));
            prop_assert!(verify_consistency(from, to, &r1, &r2, &proof).is_ok());
            if from > 0 && from < to {
                let wrong = leaf_hash(b"wrong");
                prop_assert!(verify_consistency(from, to, &wrong, &r2, &proof).is_err());
                prop_assert!(verify_consistency(from, to, &r1, &wrong, &proof).is_err());
            }
        }

        /// A tree kept as block roots gives the very proofs a tree of every leaf does, fetching
        /// only the blocks a proof reaches into.
        #[test]
        fn block_tree_proofs_match_full_tree(size in 1u64..300, block_log in 0u32..5, a in 0u64..1000, b in 0u64..1000) {
            let leaves = leaves_n(size as usize);
            let mut tree = BlockHashes::new(1 << block_log);
            for l in &leaves {
                tree.push(*l);
            }
            prop_assert_eq!(tree.len(), size);
            let bl = tree.block() as usize;
            let mut fetched = 0;
            let mut t = tree.subtrees(|k| {
                fetched += 1;
                Ok(leaves[k as usize * bl..(k as usize + 1) * bl].to_vec())
            });
            prop_assert_eq!(t.root(size).unwrap(), root(&leaves));
            prop_assert_eq!(Frontier::from_blocks(&tree).root(), root(&leaves));
            let index = a % size;
            prop_assert_eq!(inclusion_proof_in(&mut t, index, size).unwrap(), inclusion_proof(&leaves, index, size).unwrap());
            let from = b % (size + 1);
            prop_assert_eq!(consistency_proof_in(&mut t, from, size).unwrap(), consistency_proof(&leaves, from, size).unwrap());
            let end = index + 1 + b % (size - index);
            prop_assert_eq!(range_proof_in(&mut t, index, end, size).unwrap(), range_proof(&leaves, index, end, size).unwrap());
            prop_assert!(fetched <= 4, "fetched {} blocks", fetched);
            // The block roots and the recent leaves rebuild the same tree.
            let again = BlockHashes::from_parts(tree.block(), tree.blocks().to_vec(), tree.recent().to_vec()).unwrap();
            prop_assert_eq!(&again, &tree);
        }

        #[test]
        fn range_roundtrip(size in 1u64..200, a in 0u64..1000, b in 0u64..1000) {
            let leaves = leaves_n(size as usize);
            let start = a % size;
            let end = start + 1 + b % (size - start);
            let proof = range_proof(&leaves, start, end, size).unwrap();
            let slice = &leaves[start as usize..end as usize];
            let got = root_from_range(start, end, size, slice, &proof).unwrap();
            prop_assert_eq!(got, root(&leaves));
            // A dropped, altered or swapped leaf changes the root or is refused.
            if slice.len() > 1 {
                let mut swapped = slice.to_vec();
                swapped.swap(0, 1);
                prop_assert_ne!(root_from_range(start, end, size, &swapped, &proof).unwrap(), root(&leaves));
                prop_assert!(root_from_range(start, end, size, &slice[1..], &proof).is_err());
            }
        }
    }
}
