//! Sampling pieces every model family shares: the portable seeded generator ([`rng`]) and the
//! choice among logits ([`topk`]). Each family's draw is its own, because the families' samplers
//! differ: v1's CFG and inverse-CDF draw stays in `v1::lm::sampling`; MRT2's threefry keys,
//! Gumbel noise and top-k / temperature draw are in [`mrt2`].

pub mod mrt2;
pub mod rng;
pub mod topk;
