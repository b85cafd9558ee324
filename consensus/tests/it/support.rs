//! A machine in a four-validator set, and builders for the messages the tests feed it.

use weft_consensus::{
    Effect, Height, Input, LastSigned, Machine, Proposal, Round, Signature, Signed, SignedProposal,
    SignedVote, TimeoutKind, TimeoutParams, Validator, ValidatorId, ValidatorSet, Validity,
    ValueId, Vote, VoteType,
};

pub const H: Height = Height(1);

pub fn id(index: u8) -> ValidatorId {
    ValidatorId([index; 32])
}

pub fn value(tag: u8) -> ValueId {
    ValueId([tag; 32])
}

/// Validators 1 to 4, power 1 each: f = 1, a quorum is 3, f + 1 is 2. At height 1 the proposer
/// of round r is validator r mod 4 + 1.
pub fn four() -> ValidatorSet {
    ValidatorSet::new((1..=4).map(|i| Validator {
        id: id(i),
        power: 1,
    }))
    .expect("valid set")
}

pub fn params() -> TimeoutParams {
    TimeoutParams {
        propose_ms: 100,
        propose_delta_ms: 10,
        prevote_ms: 50,
        prevote_delta_ms: 5,
        precommit_ms: 50,
        precommit_delta_ms: 5,
    }
}

pub fn vote(vote_type: VoteType, round: u32, value: Option<ValueId>, from: u8) -> SignedVote {
    Signed {
        message: Vote {
            vote_type,
            height: H,
            round: Round(round),
            value,
            validator: id(from),
        },
        signature: Signature([from; 64]),
    }
}

pub fn proposal(round: u32, value: ValueId, pol_round: Option<u32>) -> SignedProposal {
    Signed {
        message: Proposal {
            height: H,
            round: Round(round),
            value,
            pol_round: pol_round.map(Round),
            proposer: four().proposer(Round(round)),
        },
        signature: Signature([9; 64]),
    }
}

/// A machine for validator `me`, started at height 1, and the effects of starting.
pub fn started(me: u8) -> (Machine, Vec<Effect>) {
    let mut machine = Machine::new(Some(id(me)), four());
    let effects = machine.handle(Input::StartHeight {
        height: H,
        validators: four(),
        params: params(),
    });
    (machine, effects)
}

pub fn feed_proposal(
    machine: &mut Machine,
    proposal: SignedProposal,
    validity: Validity,
) -> Vec<Effect> {
    machine.handle(Input::Proposal { proposal, validity })
}

/// Feeds votes from several validators; returns the effects of all of them.
pub fn feed_votes(
    machine: &mut Machine,
    vote_type: VoteType,
    round: u32,
    value: Option<ValueId>,
    from: &[u8],
) -> Vec<Effect> {
    from.iter()
        .flat_map(|&v| machine.handle(Input::Vote(vote(vote_type, round, value, v))))
        .collect()
}

/// The votes among `effects` that the machine asked to sign.
pub fn signed_votes(effects: &[Effect]) -> Vec<Vote> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::SignVote(vote) => Some(*vote),
            _ => None,
        })
        .collect()
}

/// Fires the `kind` timeout of `round` at height 1.
pub fn fire(machine: &mut Machine, kind: TimeoutKind, round: u32) -> Vec<Effect> {
    machine.handle(Input::TimeoutElapsed(weft_consensus::Timeout {
        kind,
        height: H,
        round: Round(round),
    }))
}

/// Checks that every signing effect is preceded by its durable record.
pub fn assert_persist_before_sign(effects: &[Effect]) {
    for (index, effect) in effects.iter().enumerate() {
        let expected = match effect {
            Effect::SignVote(vote) => LastSigned::Vote(*vote),
            Effect::SignProposal(proposal) => LastSigned::Proposal(*proposal),
            _ => continue,
        };
        assert!(
            index > 0 && effects[index - 1] == Effect::Persist(expected),
            "{effect:?} is not preceded by its Persist record in {effects:?}"
        );
    }
}

/// The timeouts among `effects`, as (kind, round).
pub fn scheduled(effects: &[Effect]) -> Vec<(TimeoutKind, u32)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::ScheduleTimeout { timeout, .. } => Some((timeout.kind, timeout.round.0)),
            _ => None,
        })
        .collect()
}

/// The vote validator `me` would sign, for comparison.
pub fn my_vote(me: u8, vote_type: VoteType, round: u32, value: Option<ValueId>) -> Vote {
    vote(vote_type, round, value, me).message
}
