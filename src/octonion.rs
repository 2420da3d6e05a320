//! The octonion multiplication table used by every ternary linear layer and the head mixer.
//!
//! Output part `i` of `x · w` is `Σ_j SIGN[i][j] · x_j · w_{i XOR j}`: each input part `j` meets
//! the weight part `i ⊕ j` with a sign. The table is the Cayley–Dickson product with `x` on the
//! left (`(a,b)(c,d) = (ac − d̄b, da + bc̄)`); the test below derives it from that rule rather
//! than trusting the copy.

/// `SIGN[i][j]`: rows are output parts, columns input parts.
pub const SIGN: [[f32; 8]; 8] = [
    [1., -1., -1., -1., -1., -1., -1., -1.],
    [1., 1., 1., -1., 1., -1., -1., 1.],
    [1., -1., 1., 1., 1., 1., -1., -1.],
    [1., 1., -1., 1., 1., -1., 1., -1.],
    [1., -1., -1., -1., 1., 1., 1., 1.],
    [1., 1., -1., 1., -1., 1., -1., 1.],
    [1., 1., 1., -1., -1., 1., 1., -1.],
    [1., -1., 1., 1., -1., -1., 1., 1.],
];

/// Index of the weight part that input part `j` meets in output part `i`.
#[inline(always)]
pub const fn weight_part(i: usize, j: usize) -> usize {
    i ^ j
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cayley–Dickson product of two hypercomplex numbers of length 2^k.
    fn mul(x: &[i32], y: &[i32]) -> Vec<i32> {
        let n = x.len();
        if n == 1 {
            return vec![x[0] * y[0]];
        }
        let h = n / 2;
        let (a, b) = x.split_at(h);
        let (c, d) = y.split_at(h);
        let conj = |v: &[i32]| -> Vec<i32> { v.iter().enumerate().map(|(k, &e)| if k == 0 { e } else { -e }).collect() };
        let sub = |p: Vec<i32>, q: Vec<i32>| -> Vec<i32> { p.iter().zip(&q).map(|(u, v)| u - v).collect() };
        let add = |p: Vec<i32>, q: Vec<i32>| -> Vec<i32> { p.iter().zip(&q).map(|(u, v)| u + v).collect() };
        // (a,b)(c,d) = (ac − d̄b, da + bc̄)
        let first = sub(mul(a, c), mul(&conj(d), b));
        let second = add(mul(d, a), mul(b, &conj(c)));
        [first, second].concat()
    }

    fn unit(k: usize) -> Vec<i32> {
        let mut v = vec![0; 8];
        v[k] = 1;
        v
    }

    #[test]
    #[allow(clippy::needless_range_loop, reason = "i and j are octonion part indices, used in the arithmetic as well as to index")]
    fn sign_table_is_the_cayley_dickson_product() {
        for i in 0..8 {
            for j in 0..8 {
                let product = mul(&unit(j), &unit(weight_part(i, j)));
                // e_j · e_{i⊕j} = ± e_i
                for (k, &c) in product.iter().enumerate() {
                    if k == i {
                        assert_eq!(c as f32, SIGN[i][j], "S[{i}][{j}]");
                    } else {
                        assert_eq!(c, 0);
                    }
                }
            }
        }
    }
}
