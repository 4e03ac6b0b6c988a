//! What a collective computes: the operation ([`Collective`]), the element type ([`DType`]) and
//! the reduction ([`ReduceOp`]). These are plain tags; the arithmetic lives in [`crate::reduce`].

/// A collective operation. Buffer layouts per operation are documented on [`crate::plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Collective {
    /// Every rank gathers every rank's chunk of the buffer.
    AllGather,
    /// Every rank ends with the element-wise reduction of all inputs.
    AllReduce,
    /// Every rank sends a distinct block to every rank.
    AllToAll,
    /// The root's buffer is copied to every rank.
    Broadcast {
        /// The rank whose buffer is sent.
        root: usize,
    },
    /// The root ends with the element-wise reduction of all inputs.
    Reduce {
        /// The rank that receives the result.
        root: usize,
    },
    /// Rank `r` ends with chunk `r` of the element-wise reduction of all inputs.
    ReduceScatter,
}

impl Collective {
    /// Whether the operation combines values (so [`ReduceOp`] applies).
    pub const fn reduces(self) -> bool {
        matches!(
            self,
            Collective::AllReduce | Collective::Reduce { .. } | Collective::ReduceScatter
        )
    }
}

/// Element types the kernels support.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// bfloat16 (`half::bf16`), combined in f32.
    Bf16,
    /// IEEE binary16 (`half::f16`), combined in f32.
    F16,
    /// IEEE binary32.
    F32,
    /// IEEE binary64.
    F64,
    /// Signed 8-bit integer.
    I8,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
}

impl DType {
    /// Size of one element in bytes.
    pub const fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 => 1,
            DType::Bf16 | DType::F16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
        }
    }
}

/// Reduction operators.
///
/// Integer `Sum` and `Prod` wrap (two's complement), as in MPI and NCCL. `Avg` is `Sum`
/// followed by one division by the number of ranks at the end; for integers that division
/// truncates toward zero (so `Avg` of `[1, 2]` is `1`, of `[-1, -2]` is `-1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Sum, then divide by the number of contributors.
    Avg,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
    /// Product.
    Prod,
    /// Sum.
    Sum,
}
