"""Special functions the array API standard lacks, written in its functions: `erf`.

They are what `Backend.erf` computes where the backend's library has no such function of its own
(array-api-strict, NumPy); CuPy's backend calls cupyx.scipy.special instead.
"""

from __future__ import annotations

# Cephes' rational approximations (S. L. Moshier, ndtr.c; SciPy compiles the same), highest power
# first: erf(x) = x T(x^2) / U(x^2) for |x| <= 1, erfc(x) = exp(-x^2) P(x) / Q(x) for 1 <= x < 8;
# U and Q have a leading coefficient 1. Relative error about 1e-16 in float64 (tests/backends).
_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3, 7.00332514112805075473e3,
      5.55923013010394962768e4)  # fmt: skip
_U = (3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3, 2.26290000613890934246e4,
      4.92673942608635921086e4)  # fmt: skip
_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0, 4.86371970985681366614e1,
      1.96520832956077098242e2, 5.26445194995477358631e2, 9.34528527171957607540e2, 1.02755188689515710272e3,
      5.57535335369399327526e2)  # fmt: skip
_Q = (1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2, 9.75708501743205489753e2,
      1.82390916687909736289e3, 2.24633760818710981792e3, 1.65666309194161350182e3,
      5.57535340817727675546e2)  # fmt: skip
# erfc(6) = 2.2e-17 is below half a float64 ulp of 1: erf is +-1 (rounded) from |x| = 6 on
_SATURATED = 6.0


def erf(xp, x):
    """The error function erf(x) = 2/sqrt(pi) int_0^x exp(-t^2) dt, elementwise, in x's dtype.

    Args:
        xp: the array namespace of x.
        x: a real floating-point array, any shape.

    Returns:
        erf(x), of x's shape and dtype (NaN where x is NaN).
    """
    small = xp.clip(x, -1.0, 1.0)  # each branch on arguments it is accurate for: no overflow anywhere
    z = small * small
    inner = small * _polynomial(z, _T) / _polynomial(z, _U, monic=True)
    a = xp.clip(xp.abs(x), 1.0, _SATURATED)
    outer = 1 - xp.exp(-a * a) * _polynomial(a, _P) / _polynomial(a, _Q, monic=True)  # 1 - erfc(|x|)
    return xp.where(xp.abs(x) <= 1, inner, xp.where(x < 0, -outer, outer))


def _polynomial(x, coefficients, monic=False):
    """c_0 x^n + ... + c_n by Horner's rule (with a leading 1 before c_0 where `monic`)."""
    value = x + coefficients[0] if monic else coefficients[0] * x + coefficients[1]
    for c in coefficients[1 if monic else 2 :]:
        value = value * x + c
    return value
