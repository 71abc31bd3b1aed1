//! The project's one numeric comparison for tests: `assert_close` and its tolerances.
//!
//! Owns: how two float slices are compared (element-wise `|got - want| <= abs + rel * |want|`,
//! plus NaN/length checks) and the message a failure prints. Used by CPU and GPU tests alike
//! so that every parity test reads the same way (llm.c kept three diverging checkers; we keep one).
//!
//! Does not own: the choice of tolerance for a given op: each test states its own, with a
//! comment saying how it was chosen (the GPU's whole-step tolerances are the trainer's,
//! `GpuPrecision::step_tolerance`). The end-to-end runs' model is [`tiny_model`]'s.

pub mod tiny_model;

/// An element-wise tolerance: `|got - want| <= abs + rel * |want|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub abs: f32,
    pub rel: f32,
}

impl Tolerance {
    pub const fn new(abs: f32, rel: f32) -> Self {
        Tolerance { abs, rel }
    }
}

/// How far apart two slices are.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    /// First index outside the tolerance (or the first NaN), if any.
    pub first_bad: Option<usize>,
    /// Number of elements outside the tolerance.
    pub n_bad: usize,
    pub max_abs_err: f64,
    /// `‖got − want‖₂ / ‖want‖₂` (0 when both are zero).
    pub rel_l2: f64,
}

/// Compares `got` with `want`; `Ok` with the error figures when every element is within
/// `tol` and none is NaN, `Err` with the same figures otherwise. Lengths must match.
pub fn check_close(got: &[f32], want: &[f32], tol: Tolerance) -> Result<Mismatch, Mismatch> {
    let mut m = Mismatch {
        first_bad: None,
        n_bad: 0,
        max_abs_err: 0.0,
        rel_l2: 0.0,
    };
    if got.len() != want.len() {
        m.first_bad = Some(got.len().min(want.len()));
        m.n_bad = got.len().abs_diff(want.len());
        m.max_abs_err = f64::INFINITY;
        return Err(m);
    }
    let (mut diff2, mut ref2) = (0.0f64, 0.0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (f64::from(g) - f64::from(w)).abs();
        // Two infinities of the same sign agree; NaN never passes.
        let same_inf = g.is_infinite() && w.is_infinite() && g.signum() == w.signum();
        let ok = !g.is_nan()
            && !w.is_nan()
            && (same_inf || d <= f64::from(tol.abs) + f64::from(tol.rel) * f64::from(w.abs()));
        if !ok {
            m.n_bad += 1;
            m.first_bad.get_or_insert(i);
        }
        if !same_inf {
            m.max_abs_err = m
                .max_abs_err
                .max(if d.is_nan() { f64::INFINITY } else { d });
            diff2 += d * d;
            ref2 += f64::from(w) * f64::from(w);
        }
    }
    m.rel_l2 = if ref2 > 0.0 {
        (diff2 / ref2).sqrt()
    } else {
        diff2.sqrt()
    };
    if m.n_bad == 0 { Ok(m) } else { Err(m) }
}

/// Panics with a readable report when `got` and `want` differ by more than `tol` anywhere
/// (or hold a NaN, or differ in length). `what` names the quantity in the message.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: Tolerance) {
    if let Err(m) = check_close(got, want, tol) {
        let i = m.first_bad.unwrap_or(0);
        let detail = if got.len() == want.len() {
            format!("first at [{i}]: got {} want {}", got[i], want[i])
        } else {
            format!("lengths differ: got {} want {}", got.len(), want.len())
        };
        panic!(
            "{what}: {} of {} elements outside |d| <= {} + {}*|want|; {detail}; max |d| = {:.3e}, rel L2 = {:.3e}",
            m.n_bad,
            want.len(),
            tol.abs,
            tol.rel,
            m.max_abs_err,
            m.rel_l2
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_slices_pass_and_report_zero_error() {
        let m = check_close(&[1.0, -2.0], &[1.0, -2.0], Tolerance::new(0.0, 0.0)).unwrap();
        assert_eq!(m.n_bad, 0);
        assert_eq!(m.rel_l2, 0.0);
    }

    #[test]
    fn nan_never_passes_even_with_huge_tolerance() {
        let m = check_close(&[f32::NAN], &[1.0], Tolerance::new(1e30, 1e30)).unwrap_err();
        assert_eq!(m.first_bad, Some(0));
    }

    #[test]
    fn relative_part_scales_with_reference() {
        assert!(check_close(&[100.5], &[100.0], Tolerance::new(0.0, 0.01)).is_ok());
        assert!(check_close(&[1.5], &[1.0], Tolerance::new(0.0, 0.01)).is_err());
    }

    #[test]
    fn length_mismatch_is_an_error() {
        assert!(check_close(&[1.0], &[1.0, 2.0], Tolerance::new(1.0, 1.0)).is_err());
    }

    #[test]
    #[should_panic(expected = "logprob: 1 of 2 elements")]
    fn assert_close_names_the_quantity() {
        assert_close(
            "logprob",
            &[0.0, 5.0],
            &[0.0, 1.0],
            Tolerance::new(1e-3, 0.0),
        );
    }
}
