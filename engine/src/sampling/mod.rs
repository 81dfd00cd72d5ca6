//! Sampling pieces every model family shares: the portable seeded generator ([`rng`]) and the
//! choice among logits ([`topk`]). Each family's draw stays with the family (v1: CFG and an
//! inverse-CDF draw in `lm::sampling`), because the families' samplers differ.

pub mod rng;
pub mod topk;
