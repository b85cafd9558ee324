//! Chain reads: blocks, headers, commits, results, txs, searches, accounts and `abci_query`.

use super::api::encoding::{Base64, Hash, HexBytes, Int};
use super::api::types::{self, *};
use super::api::{BLOCKCHAIN_METAS_MAX, Order};
use super::query::Query;
use super::*;
use weft_execution::{StateKey, StateValue, StateView as _};

/// Most heights one `tx_search` or `block_search` scans.
pub const SEARCH_HEIGHTS_MAX: u64 = 10_000;

/// `abci_query` codes: 0 found (or an absent key: an empty value), 1 unknown path, 2 bad data,
/// 3 a height whose state is not kept.
pub const QUERY_UNKNOWN_PATH: u32 = 1;
pub const QUERY_BAD_DATA: u32 = 2;
pub const QUERY_HEIGHT_UNAVAILABLE: u32 = 3;

/// The block at `height` in CometBFT's shape, with its last commit's signatures laid out over
/// the previous height's set.
pub(super) fn block_at(chain: &Chain, height: Height) -> Result<BlockResult, ErrorObjectOwned> {
    let sealed = stored_block(chain, height)?;
    block_result(chain, &sealed)
}

pub(super) fn stored_block(chain: &Chain, height: Height) -> Result<SealedBlock, ErrorObjectOwned> {
    chain
        .block(height)
        .map_err(internal)?
        .ok_or_else(|| not_found(format!("block at height {} is not stored", height.0)))
}

pub(super) fn block_result(
    chain: &Chain,
    sealed: &SealedBlock,
) -> Result<BlockResult, ErrorObjectOwned> {
    let consensus_hash = convert::consensus_hash(chain.genesis());
    let last_set = match &sealed.block.last_commit {
        Some(certificate) => chain.validators_at(certificate.height).map_err(internal)?,
        None => None,
    };
    Ok(convert::block(sealed, last_set.as_ref(), consensus_hash))
}

pub(super) async fn block(state: &RpcState, height: Option<Int>) -> RpcResult<BlockResult> {
    read_chain(state, move |chain| {
        let height = chain_height(chain, height)?;
        block_at(chain, height)
    })
    .await
}

pub(super) async fn block_by_hash(state: &RpcState, hash: HashParam) -> RpcResult<BlockResult> {
    read_chain(state, move |chain| {
        match chain.height_of(&ValueId(hash.0)).map_err(internal)? {
            Some(height) if height >= chain.earliest_height() => block_at(chain, height),
            _ => Ok(BlockResult {
                block_id: BlockId::default(),
                block: None,
            }),
        }
    })
    .await
}

pub(super) async fn header(state: &RpcState, height: Option<Int>) -> RpcResult<HeaderResult> {
    read_chain(state, move |chain| {
        let height = chain_height(chain, height)?;
        let sealed = stored_block(chain, height)?;
        Ok(HeaderResult {
            header: Some(convert::header(
                &sealed.block.header,
                convert::consensus_hash(chain.genesis()),
            )),
        })
    })
    .await
}

pub(super) async fn header_by_hash(state: &RpcState, hash: HashParam) -> RpcResult<HeaderResult> {
    read_chain(state, move |chain| {
        let header = match chain.height_of(&ValueId(hash.0)).map_err(internal)? {
            Some(height) if height >= chain.earliest_height() => {
                let sealed = stored_block(chain, height)?;
                Some(convert::header(
                    &sealed.block.header,
                    convert::consensus_hash(chain.genesis()),
                ))
            }
            _ => None,
        };
        Ok(HeaderResult { header })
    })
    .await
}

pub(super) async fn block_results(
    state: &RpcState,
    height: Option<Int>,
) -> RpcResult<BlockResultsResult> {
    read_chain(state, move |chain| {
        let height = chain_height(chain, height)?;
        let codes = chain.results(height).map_err(internal)?.ok_or_else(|| {
            not_found(format!(
                "results of the block at height {} are not stored",
                height.0
            ))
        })?;
        let sealed = stored_block(chain, height)?;
        let updates = validator_updates_of(&sealed);
        Ok(BlockResultsResult {
            height: Int(height.0),
            txs_results: codes
                .iter()
                .map(|code| convert::exec_result(*code))
                .collect(),
            finalize_block_events: Vec::new(),
            validator_updates: updates,
            consensus_param_updates: None,
            app_hash: Base64(sealed.block.header.state_root.0.to_vec()),
        })
    })
    .await
}

/// The validator updates a block's txs asked for (they take effect two heights on), as the
/// block's results: each `ValidatorUpdate` tx that succeeded.
pub(super) fn validator_updates_of(sealed: &SealedBlock) -> Vec<types::ValidatorUpdate> {
    sealed
        .block
        .txs
        .iter()
        .filter_map(|tx| match tx.payload {
            weft_execution::Payload::ValidatorUpdate { validator, power } => {
                Some(types::ValidatorUpdate {
                    pub_key: super::api::encoding::PubKey::ed25519(validator.0),
                    power: Int(power),
                })
            }
            _ => None,
        })
        .collect()
}

pub(super) async fn commit(state: &RpcState, height: Option<Int>) -> RpcResult<CommitResult> {
    read_chain(state, move |chain| {
        let height = chain_height(chain, height)?;
        let sealed = stored_block(chain, height)?;
        let certificate = chain
            .certificate(height)
            .map_err(internal)?
            .ok_or_else(|| not_found(format!("the commit of height {} is not stored", height.0)))?;
        let set = chain
            .validators_at(height)
            .map_err(internal)?
            .ok_or_else(|| {
                internal(format!(
                    "the validator set of height {} is not stored",
                    height.0
                ))
            })?;
        let header = &sealed.block.header;
        Ok(CommitResult {
            signed_header: SignedHeader {
                header: convert::header(header, convert::consensus_hash(chain.genesis())),
                commit: convert::commit(&certificate, &set, header.time_ms),
            },
            canonical: true,
        })
    })
    .await
}

pub(super) async fn blockchain(
    state: &RpcState,
    min: Option<Int>,
    max: Option<Int>,
) -> RpcResult<BlockchainResult> {
    read_chain(state, move |chain| {
        let latest = chain.height().0;
        let earliest = chain
            .earliest_height()
            .0
            .max(chain.genesis().initial_height);
        // CometBFT's filterMinMax: 0 means unbounded; max is capped at the latest height and
        // min raised so that at most 20 metas come back.
        let max = match max.map(|m| m.0).unwrap_or(0) {
            0 => latest,
            m => m.min(latest),
        };
        let min = match min.map(|m| m.0).unwrap_or(0) {
            0 => earliest,
            m => m.max(earliest),
        };
        if min > max && latest >= earliest {
            return Err(not_found(format!(
                "min height {min} can't be greater than max height {max}"
            )));
        }
        let min = min.max(max.saturating_sub(BLOCKCHAIN_METAS_MAX - 1));
        let consensus_hash = convert::consensus_hash(chain.genesis());
        let mut metas = Vec::new();
        if latest >= earliest {
            for height in (min..=max).rev() {
                let sealed = stored_block(chain, Height(height))?;
                metas.push(BlockMeta {
                    block_id: BlockId::of(sealed.hash.0),
                    block_size: Int(sealed.bytes.len() as u64),
                    header: convert::header(&sealed.block.header, consensus_hash),
                    num_txs: Int(sealed.block.txs.len() as u64),
                });
            }
        }
        Ok(BlockchainResult {
            last_height: Int(latest),
            block_metas: metas,
        })
    })
    .await
}

/// A committed tx's result with its bytes.
fn tx_result(sealed: &SealedBlock, index: u32, code: u8) -> Result<TxResult, ErrorObjectOwned> {
    let tx = sealed.block.txs.get(index as usize).ok_or_else(|| {
        internal(format!(
            "a tx is indexed at height {} index {index}, which the block does not hold",
            sealed.block.header.height.0
        ))
    })?;
    Ok(TxResult {
        hash: Hash::some(tx.hash().0),
        height: Int(sealed.block.header.height.0),
        index,
        tx_result: convert::exec_result(code),
        tx: Base64(tx.encode()),
    })
}

pub(super) async fn tx(state: &RpcState, hash: HashParam) -> RpcResult<TxResult> {
    read_chain(state, move |chain| {
        let location = chain
            .tx(&TxHash(hash.0))
            .map_err(internal)?
            .ok_or_else(|| not_found(format!("tx ({hash}) not found")))?;
        let sealed = stored_block(chain, location.height)?;
        tx_result(&sealed, location.index, location.code)
    })
    .await
}

/// The attributes a committed tx's event has (`tm.event`, `tx.hash`, `tx.height`), which
/// subscriptions and `tx_search` match.
pub(super) fn tx_attributes(
    hash: &TxHash,
    height: Height,
) -> std::collections::BTreeMap<String, Vec<String>> {
    [
        ("tm.event", "Tx".to_owned()),
        ("tx.hash", hex::encode_upper(hash.0)),
        ("tx.height", height.0.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), vec![v]))
    .collect()
}

pub(super) fn block_attributes(
    kind: &str,
    height: Height,
) -> std::collections::BTreeMap<String, Vec<String>> {
    [
        ("tm.event", kind.to_owned()),
        ("block.height", height.0.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), vec![v]))
    .collect()
}

/// Page `page` (from 1) of `per_page` items: the index range into `total` items, or CometBFT's
/// error for a page past the last.
pub(super) fn page_range(
    total: u64,
    page: Option<Int>,
    per_page: Option<Int>,
) -> Result<std::ops::Range<u64>, ErrorObjectOwned> {
    let per_page = per_page
        .map(|p| p.0)
        .filter(|p| *p > 0)
        .unwrap_or(super::api::PER_PAGE_DEFAULT)
        .min(super::api::PER_PAGE_MAX);
    let pages = total.div_ceil(per_page).max(1);
    let page = page.map(|p| p.0).unwrap_or(1);
    if page == 0 || page > pages {
        return Err(not_found(format!(
            "page should be within [1, {pages}] range, given {page}"
        )));
    }
    let start = (page - 1) * per_page;
    Ok(start..(start + per_page).min(total))
}

/// Parses a search query and checks that it names only `allowed` tags.
fn search_query(text: &str, allowed: &[&str]) -> Result<Query, ErrorObjectOwned> {
    let query = Query::parse(text).map_err(|e| invalid_params(format!("bad query: {e}")))?;
    if let Some(tag) = query.tags().find(|tag| !allowed.contains(tag)) {
        return Err(invalid_params(format!(
            "the query names {tag:?}; searches answer {}",
            allowed.join(", ")
        )));
    }
    Ok(query)
}

/// The heights a search scans: those its `tag` conditions allow, within what is stored, at
/// most [`SEARCH_HEIGHTS_MAX`] of them.
fn search_heights(
    chain: &Chain,
    query: &Query,
    tag: &str,
) -> Result<Option<std::ops::RangeInclusive<u64>>, ErrorObjectOwned> {
    let earliest = chain
        .earliest_height()
        .0
        .max(chain.genesis().initial_height);
    let latest = chain.height().0;
    let (lo, hi) = query.range(tag).unwrap_or((0, u64::MAX));
    let (lo, hi) = (lo.max(earliest), hi.min(latest));
    if lo > hi {
        return Ok(None);
    }
    if hi - lo >= SEARCH_HEIGHTS_MAX {
        return Err(invalid_params(format!(
            "the query spans {} heights ({lo} to {hi}); narrow {tag} to at most \
             {SEARCH_HEIGHTS_MAX} heights",
            hi - lo + 1
        )));
    }
    Ok(Some(lo..=hi))
}

pub(super) async fn tx_search(
    state: &RpcState,
    query: String,
    page: Option<Int>,
    per_page: Option<Int>,
    order: Option<Order>,
) -> RpcResult<TxSearchResult> {
    let query = search_query(&query, &["tm.event", "tx.hash", "tx.height"])?;
    read_chain(state, move |chain| {
        // Every match's (height, index, code), in height order.
        let mut found: Vec<(Height, u32, u8)> = Vec::new();
        if let Some(text) = query.equals("tx.hash") {
            let hash = HashParam::parse(text).map_err(invalid_params)?;
            if let Some(location) = chain.tx(&TxHash(hash.0)).map_err(internal)?
                && location.height >= chain.earliest_height()
                && query.matches(&tx_attributes(&TxHash(hash.0), location.height))
            {
                found.push((location.height, location.index, location.code));
            }
        } else if let Some(heights) = search_heights(chain, &query, "tx.height")? {
            for height in heights {
                let height = Height(height);
                let sealed = stored_block(chain, height)?;
                let codes = chain.results(height).map_err(internal)?.unwrap_or_default();
                for (index, tx) in sealed.block.txs.iter().enumerate() {
                    if query.matches(&tx_attributes(&tx.hash(), height)) {
                        let code = codes.get(index).copied().unwrap_or(0);
                        found.push((height, index as u32, code));
                    }
                }
            }
        }
        if order == Some(Order::Desc) {
            found.reverse();
        }
        let range = page_range(found.len() as u64, page, per_page)?;
        let mut txs = Vec::new();
        let mut cached: Option<SealedBlock> = None;
        for &(height, index, code) in &found[range.start as usize..range.end as usize] {
            if cached
                .as_ref()
                .is_none_or(|b| b.block.header.height != height)
            {
                cached = Some(stored_block(chain, height)?);
            }
            if let Some(sealed) = &cached {
                txs.push(tx_result(sealed, index, code)?);
            }
        }
        Ok(TxSearchResult {
            txs,
            total_count: Int(found.len() as u64),
        })
    })
    .await
}

pub(super) async fn block_search(
    state: &RpcState,
    query: String,
    page: Option<Int>,
    per_page: Option<Int>,
    order: Option<Order>,
) -> RpcResult<BlockSearchResult> {
    let query = search_query(&query, &["tm.event", "block.height"])?;
    read_chain(state, move |chain| {
        let mut heights: Vec<u64> = match search_heights(chain, &query, "block.height")? {
            Some(range) => range
                .filter(|h| query.matches(&block_attributes("NewBlock", Height(*h))))
                .collect(),
            None => Vec::new(),
        };
        if order == Some(Order::Desc) {
            heights.reverse();
        }
        let range = page_range(heights.len() as u64, page, per_page)?;
        let blocks = heights[range.start as usize..range.end as usize]
            .iter()
            .map(|h| block_at(chain, Height(*h)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BlockSearchResult {
            blocks,
            total_count: Int(heights.len() as u64),
        })
    })
    .await
}

pub(super) async fn account(state: &RpcState, address: HashParam) -> RpcResult<AccountResult> {
    let address = Address(address.0);
    read_chain(state, move |chain| {
        let account = chain.account(&address).map_err(internal)?;
        Ok(AccountResult {
            address: hex::encode(address.0),
            balance: Int(account.balance),
            nonce: Int(account.nonce),
        })
    })
    .await
}

/// `abci_query` over Weft's state. Only the latest height's state is kept: another height is
/// answered with code 3.
pub(super) async fn abci_query(
    state: &RpcState,
    path: Option<String>,
    data: Option<HexBytes>,
    height: Option<Int>,
) -> RpcResult<AbciQueryResult> {
    read_chain(state, move |chain| {
        let latest = chain.height().0;
        let data = data.unwrap_or_default().0;
        let mut response = AbciQuery {
            code: 0,
            log: String::new(),
            info: String::new(),
            index: Int(0),
            key: Base64(data.clone()),
            value: Base64::default(),
            proof_ops: None,
            height: Int(latest),
            codespace: String::new(),
        };
        let refuse = |mut response: AbciQuery, code: u32, log: String| {
            response.code = code;
            response.log = log;
            Ok(AbciQueryResult { response })
        };
        if let Some(asked) = height.map(|h| h.0).filter(|h| *h != 0 && *h != latest) {
            return refuse(
                response,
                QUERY_HEIGHT_UNAVAILABLE,
                format!(
                    "the state of height {asked} is not kept; only the latest height {latest}'s is"
                ),
            );
        }
        let path = path.unwrap_or_default();
        let value = match path.as_str() {
            "/account" | "account" => {
                let Ok(address) = <[u8; 32]>::try_from(data.as_slice()) else {
                    return refuse(
                        response,
                        QUERY_BAD_DATA,
                        format!("/account takes a 32-byte address, not {} bytes", data.len()),
                    );
                };
                let account = chain.account(&Address(address)).map_err(internal)?;
                json!({"balance": account.balance.to_string(), "nonce": account.nonce.to_string()})
            }
            "/name" | "name" => {
                let name = match std::str::from_utf8(&data)
                    .map_err(|e| e.to_string())
                    .and_then(|text| weft_execution::Name::new(text).map_err(|e| e.to_string()))
                {
                    Ok(name) => name,
                    Err(e) => return refuse(response, QUERY_BAD_DATA, format!("bad name: {e}")),
                };
                match chain.state().get(&StateKey::Name(name)).map_err(internal)? {
                    Some(StateValue::NameOwner(owner)) => json!({"owner": hex::encode(owner.0)}),
                    _ => {
                        response.log = "does not exist".into();
                        return Ok(AbciQueryResult { response });
                    }
                }
            }
            other => {
                return refuse(
                    response,
                    QUERY_UNKNOWN_PATH,
                    format!("unknown path {other:?}; the paths are /account and /name"),
                );
            }
        };
        response.value = Base64(value.to_string().into_bytes());
        Ok(AbciQueryResult { response })
    })
    .await
}
