//! The RFC 9162 Merkle tree over the lake's events: leaf and node hashing, the incremental root the
//! writer keeps (`Frontier`), inclusion, consistency and range proofs, and their verification.
//!
//! Leaf hash = SHA-256(0x00 ‖ canonical event bytes); node hash = SHA-256(0x01 ‖ left ‖ right); the tree
//! over `n` leaves splits at the largest power of two smaller than `n` (RFC 9162 §2.1.1). Proof
//! generation takes the slice of all leaf hashes; verification needs only the proof, so an auditor can
//! run it offline. Nothing here does IO.

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

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(height, hash)) = self.nodes.last() {
            if height != node.0 {
                break;
            }
            self.nodes.pop();
            node = (height + 1, node_hash(&hash, &node.1));
        }
        self.nodes.push(node);
        self.size += 1;
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

/// The inclusion proof of leaf `index` in the tree formed by the first `size` of `leaves` (RFC 9162
/// §2.1.3.1), leaf-side hash first.
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    if index >= size || size > leaves.len() as u64 {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(index as usize, &leaves[..size as usize], &mut out);
    Ok(out)
}

fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
    if d.len() <= 1 {
        return;
    }
    let k = split(d.len() as u64) as usize;
    if m < k {
        path(m, &d[..k], out);
        out.push(root(&d[k..]));
    } else {
        path(m - k, &d[k..], out);
        out.push(root(&d[..k]));
    }
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
    if from > to {
        return Err(ProofError::SizesBackwards { from, to });
    }
    if to > leaves.len() as u64 {
        return Err(ProofError::IndexOutOfRange {
            index: to,
            size: leaves.len() as u64,
        });
    }
    let mut out = Vec::new();
    if from > 0 && from < to {
        subproof(from as usize, &leaves[..to as usize], true, &mut out);
    }
    Ok(out)
}

fn subproof(m: usize, d: &[Hash], b: bool, out: &mut Vec<Hash>) {
    let n = d.len();
    if m == n {
        if !b {
            out.push(root(d));
        }
        return;
    }
    let k = split(n as u64) as usize;
    if m <= k {
        subproof(m, &d[..k], b, out);
        out.push(root(&d[k..]));
    } else {
        subproof(m - k, &d[k..], false, out);
        out.push(root(&d[..k]));
    }
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
    if start >= end || end > size || size > leaves.len() as u64 {
        return Err(ProofError::BadRange { start, end, size });
    }
    let mut out = Vec::new();
    range_walk(&leaves[..size as usize], 0, start as usize, end as usize, &mut out);
    Ok(out)
}

fn range_walk(d: &[Hash], lo: usize, start: usize, end: usize, out: &mut Vec<Hash>) {
    let hi = lo + d.len();
    if hi <= start || lo >= end {
        out.push(root(d));
        return;
    }
    if d.len() == 1 {
        return;
    }
    let k = split(d.len() as u64) as usize;
    range_walk(&d[..k], lo, start, end, out);
    range_walk(&d[k..], lo + k, start, end, out);
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
    use std::fmt::Write;
    hash.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
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
