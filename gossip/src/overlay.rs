//! Overlay generation for testnets: which validators connect to which.
//!
//! The recipe of the semantic gossip paper: each node picks `x = n − √(n² − n·k)` random
//! neighbours, so that with links made symmetric the expected degree is `k`; the draw is
//! retried until the graph is connected and every node has at least `f + 1` neighbours, where
//! `f` is the number of faulty nodes the overlay must withstand: `f` faulty neighbours can then
//! never cut a node off. `f` is a parameter, not the consensus bound ⌊(n − 1)/3⌋: sparse
//! overlays (the gossip benchmark's degree 4 at 16 or 32 nodes) are below that bound on
//! purpose. Seeded, so a testnet's overlay can be reproduced.

use std::collections::{BTreeSet, VecDeque};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thiserror::Error;

/// How many draws `generate` makes before it gives up.
pub const OVERLAY_ATTEMPTS_MAX: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OverlayError {
    #[error("an overlay needs at least 2 nodes, got {0}")]
    TooFewNodes(usize),
    #[error("degree {degree} is outside {min}..={max} for {nodes} nodes (at least faulty + 1)")]
    DegreeOutOfRange {
        degree: usize,
        min: usize,
        max: usize,
        nodes: usize,
    },
    #[error("no connected overlay with minimum degree {min_degree} in {attempts} draws")]
    NotFound { min_degree: usize, attempts: u32 },
}

/// An undirected overlay over nodes `0..n`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Overlay {
    neighbours: Vec<BTreeSet<usize>>,
}

impl Overlay {
    pub fn len(&self) -> usize {
        self.neighbours.len()
    }

    pub fn is_empty(&self) -> bool {
        self.neighbours.is_empty()
    }

    /// The neighbours of `node`, ascending.
    pub fn neighbours(&self, node: usize) -> &BTreeSet<usize> {
        &self.neighbours[node]
    }

    pub fn min_degree(&self) -> usize {
        self.neighbours.iter().map(BTreeSet::len).min().unwrap_or(0)
    }

    pub fn edge_count(&self) -> usize {
        self.neighbours.iter().map(BTreeSet::len).sum::<usize>() / 2
    }

    pub fn is_connected(&self) -> bool {
        let mut seen = vec![false; self.len()];
        let mut queue = VecDeque::from([0]);
        seen[0] = true;
        while let Some(node) = queue.pop_front() {
            for &next in &self.neighbours[node] {
                if !seen[next] {
                    seen[next] = true;
                    queue.push_back(next);
                }
            }
        }
        seen.iter().all(|s| *s)
    }
}

/// The most faulty nodes consensus among `n` nodes tolerates: f = ⌊(n − 1) / 3⌋.
pub fn max_faulty(nodes: usize) -> usize {
    nodes.saturating_sub(1) / 3
}

/// Neighbours each node picks for a target degree `k`: x = n − √(n² − n·k), in thousandths
/// (each node rounds it up or down at random so that the mean is exact), or everyone for a
/// complete graph.
fn picks_per_node_milli(nodes: usize, degree: usize) -> u64 {
    if degree >= nodes - 1 {
        return (nodes as u64 - 1) * 1_000;
    }
    let (n, k) = (nodes as f64, degree as f64);
    let x = n - (n * n - n * k).max(0.0).sqrt();
    ((x * 1_000.0).round() as u64).clamp(1_000, (nodes as u64 - 1) * 1_000)
}

/// A seeded, connected overlay of `nodes` nodes with target degree `degree`, where every node
/// has at least `faulty + 1` neighbours.
pub fn generate(
    nodes: usize,
    degree: usize,
    faulty: usize,
    seed: u64,
) -> Result<Overlay, OverlayError> {
    if nodes < 2 {
        return Err(OverlayError::TooFewNodes(nodes));
    }
    let min_degree = faulty + 1;
    if degree < min_degree || degree > nodes - 1 {
        return Err(OverlayError::DegreeOutOfRange {
            degree,
            min: min_degree,
            max: nodes - 1,
            nodes,
        });
    }
    let picks = picks_per_node_milli(nodes, degree);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for _ in 0..OVERLAY_ATTEMPTS_MAX {
        let overlay = draw(nodes, picks, &mut rng);
        if overlay.is_connected() && overlay.min_degree() >= min_degree {
            return Ok(overlay);
        }
    }
    Err(OverlayError::NotFound {
        min_degree,
        attempts: OVERLAY_ATTEMPTS_MAX,
    })
}

/// One draw: every node links to about `picks_milli / 1000` distinct random others; links are
/// symmetric.
fn draw(nodes: usize, picks_milli: u64, rng: &mut ChaCha8Rng) -> Overlay {
    let mut neighbours = vec![BTreeSet::new(); nodes];
    for node in 0..nodes {
        let round_up = rng.random_range(0..1_000) < picks_milli % 1_000;
        let picks = (picks_milli / 1_000) as usize + usize::from(round_up);
        let mut chosen = BTreeSet::new();
        while chosen.len() < picks {
            let other = rng.random_range(0..nodes - 1);
            chosen.insert(if other >= node { other + 1 } else { other });
        }
        for other in chosen {
            neighbours[node].insert(other);
            neighbours[other].insert(node);
        }
    }
    Overlay { neighbours }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_are_connected_symmetric_and_tolerate_f_neighbours() {
        // (nodes, degree, faulty): the gossip benchmark's sparse overlays and consensus-bound ones.
        let cases = [
            (4, 2, 1),
            (4, 3, 1),
            (10, 3, 1),
            (10, 4, 2),
            (16, 4, 1),
            (16, 8, 5),
            (32, 4, 1),
            (32, 16, 10),
            (128, 43, 10),
        ];
        for (nodes, degree, faulty) in cases {
            for seed in 0..20 {
                let overlay = generate(nodes, degree, faulty, seed).unwrap();
                assert!(overlay.is_connected(), "n={nodes} k={degree} seed={seed}");
                assert!(
                    overlay.min_degree() > faulty,
                    "n={nodes} k={degree} seed={seed}: min degree {}",
                    overlay.min_degree()
                );
                for node in 0..nodes {
                    assert!(!overlay.neighbours(node).contains(&node), "no self-links");
                    for &other in overlay.neighbours(node) {
                        assert!(overlay.neighbours(other).contains(&node), "symmetric");
                    }
                }
            }
        }
    }

    #[test]
    fn the_average_degree_follows_the_target() {
        for (nodes, degree) in [(16, 4), (32, 11), (64, 22), (128, 43)] {
            let mut total = 0;
            for seed in 0..20 {
                total += generate(nodes, degree, 1, seed).unwrap().edge_count() * 2;
            }
            let average = total as f64 / (20.0 * nodes as f64);
            assert!(
                (average - degree as f64).abs() <= degree as f64 * 0.25,
                "n={nodes} k={degree}: average degree {average}"
            );
        }
    }

    #[test]
    fn a_seed_gives_one_overlay() {
        assert_eq!(generate(10, 4, 3, 7), generate(10, 4, 3, 7));
        assert_ne!(generate(32, 11, 3, 1), generate(32, 11, 3, 2));
    }

    #[test]
    fn full_degree_is_the_complete_graph() {
        let overlay = generate(7, 6, max_faulty(7), 3).unwrap();
        assert_eq!(overlay.edge_count(), 21);
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert_eq!(generate(1, 1, 0, 0), Err(OverlayError::TooFewNodes(1)));
        assert!(matches!(
            generate(10, 3, max_faulty(10), 0),
            Err(OverlayError::DegreeOutOfRange { min: 4, .. })
        ));
        assert!(matches!(
            generate(10, 10, 1, 0),
            Err(OverlayError::DegreeOutOfRange { max: 9, .. })
        ));
    }
}
