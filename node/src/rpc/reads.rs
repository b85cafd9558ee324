//! Chain reads: `block`, `block_results`, `tx`, `account`.

use super::*;

pub(super) async fn block(state: Arc<RpcState>, params: Params<'static>) -> MethodResult {
    let HeightParams { height } = parse_params(params.as_str())?;
    read_chain(&state, move |chain| {
        let height = chain_height(chain, height)?;
        let block = chain
            .block(height)
            .map_err(internal)?
            .ok_or_else(|| not_found(format!("block {} is not stored", height.0)))?;
        Ok(block_json(&block))
    })
    .await
}

pub(super) async fn block_results(state: Arc<RpcState>, params: Params<'static>) -> MethodResult {
    let HeightParams { height } = parse_params(params.as_str())?;
    read_chain(&state, move |chain| {
        let height = chain_height(chain, height)?;
        let codes = chain
            .results(height)
            .map_err(internal)?
            .ok_or_else(|| not_found(format!("results of block {} are not stored", height.0)))?;
        let results: Vec<Value> = codes.iter().map(|code| tx_result_json(*code)).collect();
        Ok(json!({ "height": height.0, "txs_results": results }))
    })
    .await
}

pub(super) async fn tx(state: Arc<RpcState>, params: Params<'static>) -> MethodResult {
    let HashParams { hash } = parse_params(params.as_str())?;
    let hash = TxHash(parse_hash32("hash", &hash).map_err(invalid_params)?);
    read_chain(&state, move |chain| {
        let hash_hex = hex::encode(hash.0);
        let location = chain
            .tx(&hash)
            .map_err(internal)?
            .ok_or_else(|| not_found(format!("tx {hash_hex} is not in a committed block")))?;
        let block = chain.block(location.height).map_err(internal)?;
        let tx = block
            .as_ref()
            .and_then(|b| b.block.txs.get(location.index as usize))
            .ok_or_else(|| {
                internal(format!(
                    "tx {hash_hex} is indexed at block {} index {}, which is not stored",
                    location.height.0, location.index
                ))
            })?;
        Ok(json!({
            "hash": hash_hex,
            "height": location.height.0,
            "index": location.index,
            "tx_result": tx_result_json(location.code),
            "tx": hex::encode(tx.encode()),
        }))
    })
    .await
}

pub(super) async fn account(state: Arc<RpcState>, params: Params<'static>) -> MethodResult {
    let AddressParams { address } = parse_params(params.as_str())?;
    let address = Address(parse_hash32("address", &address).map_err(invalid_params)?);
    read_chain(&state, move |chain| {
        let account = chain.account(&address).map_err(internal)?;
        Ok(json!({
            "address": hex::encode(address.0),
            "balance": account.balance,
            "nonce": account.nonce,
        }))
    })
    .await
}
