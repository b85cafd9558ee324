//! Which network a node belongs to, and the check that keeps two networks apart.
//!
//! A node's network is its chain id and the hash of its genesis ([`NetworkId`]). Each side
//! states its own in identify's `protocol_version` as soon as a connection opens
//! (`weft/1 chain-id=<id> genesis=<64 hex>`), as CometBFT's handshake compares `NodeInfo.network`.
//! Until a peer's statement has arrived and matched, the swarm opens no consensus stream to it,
//! reads none of its streams, and serves it no blocks; a peer that states another network (or
//! none) is disconnected and refused for a while, and the log says which of the two differs.
//! Both values are needed: two test chains often share a chain id, and the genesis hash alone
//! would not tell an operator that they pointed a node at the wrong chain.

use std::fmt;

use thiserror::Error;

/// What every Weft identify statement starts with; the version changes if the format does.
pub const PROTOCOL_VERSION_PREFIX: &str = "weft/1";
/// Longest statement read; longer ones are refused without parsing (the chain id is at most
/// 50 bytes, so a genuine one is under 150).
pub const PROTOCOL_VERSION_BYTES_MAX: usize = 256;

/// A chain id and the hash of its genesis.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NetworkId {
    pub chain_id: String,
    pub genesis_hash: [u8; 32],
}

/// How a peer's statement differs from ours.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
pub enum NetworkMismatch {
    #[error("it is not a Weft node of this protocol version (it says {0:?})")]
    NotWeft(String),
    #[error("its chain id is {theirs:?}, ours is {ours:?}")]
    ChainId { ours: String, theirs: String },
    #[error(
        "its genesis hash is {}, ours is {} (both on chain id {chain_id:?}: the genesis files differ)",
        hex::encode(theirs),
        hex::encode(ours)
    )]
    GenesisHash {
        chain_id: String,
        ours: [u8; 32],
        theirs: [u8; 32],
    },
}

impl NetworkId {
    pub fn new(chain_id: &str, genesis_hash: [u8; 32]) -> Self {
        NetworkId {
            chain_id: chain_id.to_owned(),
            genesis_hash,
        }
    }

    /// The statement this node makes in identify.
    pub fn protocol_version(&self) -> String {
        format!(
            "{PROTOCOL_VERSION_PREFIX} chain-id={} genesis={}",
            self.chain_id,
            hex::encode(self.genesis_hash)
        )
    }

    /// The gossipsub topic of this network's txs: two networks never share one.
    pub fn tx_topic(&self) -> String {
        format!(
            "weft/txs/{}/{}",
            self.chain_id,
            hex::encode(&self.genesis_hash[..8])
        )
    }

    /// Reads a peer's statement.
    pub fn parse(statement: &str) -> Option<NetworkId> {
        if statement.len() > PROTOCOL_VERSION_BYTES_MAX {
            return None;
        }
        let mut parts = statement.split(' ');
        if parts.next()? != PROTOCOL_VERSION_PREFIX {
            return None;
        }
        let chain_id = parts.next()?.strip_prefix("chain-id=")?;
        let hash_hex = parts.next()?.strip_prefix("genesis=")?;
        if parts.next().is_some() || chain_id.is_empty() {
            return None;
        }
        let mut genesis_hash = [0u8; 32];
        hex::decode_to_slice(hash_hex, &mut genesis_hash).ok()?;
        Some(NetworkId::new(chain_id, genesis_hash))
    }

    /// Whether a peer that made `statement` belongs to this network.
    pub fn check(&self, statement: &str) -> Result<(), NetworkMismatch> {
        let Some(theirs) = NetworkId::parse(statement) else {
            let shown: String = statement.chars().take(80).collect();
            return Err(NetworkMismatch::NotWeft(shown));
        };
        if theirs.chain_id != self.chain_id {
            return Err(NetworkMismatch::ChainId {
                ours: self.chain_id.clone(),
                theirs: theirs.chain_id,
            });
        }
        if theirs.genesis_hash != self.genesis_hash {
            return Err(NetworkMismatch::GenesisHash {
                chain_id: self.chain_id.clone(),
                ours: self.genesis_hash,
                theirs: theirs.genesis_hash,
            });
        }
        Ok(())
    }
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chain {} (genesis {})",
            self.chain_id,
            hex::encode(self.genesis_hash)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_reads_back_and_each_difference_is_named() {
        let ours = NetworkId::new("weft-1", [7; 32]);
        assert_eq!(
            NetworkId::parse(&ours.protocol_version()),
            Some(ours.clone())
        );
        assert_eq!(ours.check(&ours.protocol_version()), Ok(()));

        let other_chain = NetworkId::new("weft-2", [7; 32]).protocol_version();
        let error = ours.check(&other_chain).unwrap_err().to_string();
        assert!(
            error.contains("chain id is \"weft-2\", ours is \"weft-1\""),
            "{error}"
        );

        let other_genesis = NetworkId::new("weft-1", [8; 32]).protocol_version();
        let error = ours.check(&other_genesis).unwrap_err().to_string();
        assert!(error.contains("genesis hash is 0808"), "{error}");
        assert!(error.contains("ours is 0707"), "{error}");

        let refused = [
            "",
            "/weft/1",
            "ipfs/0.1.0",
            "weft/2 chain-id=weft-1 genesis=00",
            "weft/1 chain-id= genesis=0707070707070707070707070707070707070707070707070707070707070707",
            "weft/1 chain-id=weft-1 genesis=07",
            "weft/1 chain-id=weft-1 genesis=zz07070707070707070707070707070707070707070707070707070707070707",
            "weft/1 chain-id=weft-1",
            "weft/1 genesis=0707070707070707070707070707070707070707070707070707070707070707 chain-id=weft-1",
        ];
        for statement in refused {
            assert!(
                matches!(ours.check(statement), Err(NetworkMismatch::NotWeft(_))),
                "{statement:?}"
            );
        }
        let long = format!("{} {}", ours.protocol_version(), "x".repeat(300));
        assert!(
            matches!(ours.check(&long), Err(NetworkMismatch::NotWeft(shown)) if shown.len() <= 80)
        );
    }

    #[test]
    fn networks_that_differ_use_different_tx_topics() {
        let a = NetworkId::new("weft-1", [1; 32]);
        let b = NetworkId::new("weft-1", [2; 32]);
        assert_ne!(a.tx_topic(), b.tx_topic());
        assert!(a.tx_topic().starts_with("weft/txs/weft-1/"));
    }
}
