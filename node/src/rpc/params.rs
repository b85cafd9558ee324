//! Which height a height param names, answered with CometBFT's errors.

use super::*;

/// The height a `block`-like method reads: `requested`, or the latest when it is absent or 0
/// (CometBFT's "latest"). Out of range is answered as CometBFT answers it: `height X must be
/// less than or equal to the current blockchain height Y` above the tip, and `height X is not
/// available, lowest height is Y` below the lowest stored block (pruned, before a
/// state-synced node's snapshot, or before the initial height).
pub(super) fn resolve_height(
    requested: Option<u64>,
    latest: Height,
    initial: u64,
    earliest: Height,
) -> Result<Height, ErrorObjectOwned> {
    if latest.0 < initial {
        return Err(not_found(format!(
            "no block has been committed yet; the first height is {initial}"
        )));
    }
    let lowest = earliest.0.max(initial);
    match requested.filter(|h| *h != 0) {
        None => Ok(latest),
        Some(h) if h > latest.0 => Err(not_found(format!(
            "height {h} must be less than or equal to the current blockchain height {}",
            latest.0
        ))),
        Some(h) if h < lowest => Err(not_found(format!(
            "height {h} is not available, lowest height is {lowest}"
        ))),
        Some(h) => Ok(Height(h)),
    }
}

pub(super) fn chain_height(
    chain: &Chain,
    requested: Option<Int>,
) -> Result<Height, ErrorObjectOwned> {
    resolve_height(
        requested.map(|h| h.0),
        chain.height(),
        chain.genesis().initial_height,
        chain.earliest_height(),
    )
}
