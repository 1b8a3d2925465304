//! CPU kernels. They see slices and [`Layout`](crate::tensor::Layout)s, never tensors or the
//! graph, and are generic over the element type ([`Float`](crate::tensor::Float)).
//!
//! | file | kernels |
//! |---|---|
//! | `strided.rs` | the row walker every elementwise kernel uses |
//! | `elementwise.rs` | unary, binary, compare, where, copy, cast, assign |
//! | `reduce.rs` | sum, max over dims |
//! | `conv.rs` | conv2d (direct, im2col + GEMM, parallel) with its input / weight gradients, max pooling |
//! | `matmul.rs` | the GEMM ladder (naive to packed + parallel) and batching |
//! | `softmax.rs` | softmax, log-softmax, cross-entropy, forward and backward |
//! | `layernorm.rs` | layer norm forward and backward |
//! | `attention.rs` | flash-style attention forward and backward |
//! | `isa.rs` | run-time detection of AVX-512 / AVX2 for multi-versioned kernels |
//! | `index.rs` | index_select / index_add, gather / scatter_add |
//! | `optim.rs` | fused SGD, Adam/AdamW, RMSprop updates |
//! | `pool.rs` | recycled output buffers (no page faults in a steady training loop) |
//! | `fused_ladder.rs` | the ladders of the memory-bound kernels (softmax, cross-entropy, layer norm, GELU, AdamW) |
//! | `ladder.rs` | the registry of kernel ladders ([`ladders`]) that the kernel report and tests walk |
//! | `peak.rs` | the machine's measured FMA peak and memory bandwidth, the report's yardsticks |

pub mod attention;
pub mod conv;
pub mod elementwise;
pub mod fused_ladder;
pub mod index;
pub mod isa;
pub mod ladder;
pub mod layernorm;
pub mod matmul;
pub mod optim;
pub mod peak;
pub mod pool;
pub mod reduce;
pub mod softmax;
pub mod strided;

pub use ladder::{ladders, Ladder, LadderVersion, Limit, Workload};
