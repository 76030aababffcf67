/* test_half.c - bf16 / f16 <-> f32 conversions of src/half.h: exhaustive round trips of all 65536
   bit patterns, independent reference values, round-to-nearest-even at every tie, overflow and
   subnormals. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "half.h"

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static int f16_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
static int bf16_is_nan(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0; }

/* The value of an f16 bit pattern computed independently of half.h (exact in double). */
static double f16_ref_value(uint16_t h) {
    int sign = h >> 15, e = (h >> 10) & 0x1f, man = h & 0x3ff;
    double v;
    if (e == 0) v = ldexp((double)man, -24);
    else if (e == 31) v = man ? NAN : INFINITY;
    else v = ldexp((double)(1024 + man), e - 25);
    return sign ? -v : v;
}

/* f16 nearest-even rounding of x computed independently in double (x finite). */
static double f16_ref_round(double x) {
    double a = fabs(x);
    if (a >= 65520.0) return copysign(INFINITY, x); /* 65504 + half an ulp (16) ties to even = 2^16 */
    int e;
    frexp(a, &e); /* a = m * 2^e, m in [0.5, 1) -> unbiased exponent e - 1 */
    int ue = e - 1;
    if (ue < -14) ue = -14; /* subnormals share the quantum 2^-24 */
    double q = ldexp(1.0, ue - 10);
    double r = nearbyint(a / q) * q; /* a / q is exact; nearbyint rounds half to even */
    return copysign(r, x);
}

static double bf16_ref_round(float x) {
    double a = fabs((double)x);
    if (a == 0.0) return (double)x;
    int e;
    frexp(a, &e);
    int ue = e - 1;
    if (ue < -126) ue = -126;
    double q = ldexp(1.0, ue - 7);
    double r = nearbyint(a / q) * q;
    if (r > ldexp(255.0, 120)) r = INFINITY; /* above the largest finite bf16: 0x7f7f = 255 * 2^120 */
    return copysign(r, (double)x);
}

/* ---- exhaustive round trips -------------------------------------------------------------------- */

static void test_f16_all_patterns(void **state) {
    (void)state;
    int n_nan = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = fm_f16_to_f32(h);
        if (f16_is_nan(h)) {
            n_nan++;
            if (!isnan(f)) fail_msg("f16 0x%04x is NaN but widened to %g", h, (double)f);
            uint16_t back = fm_f32_to_f16(f);
            if (!f16_is_nan(back)) fail_msg("f16 NaN 0x%04x narrowed back to non-NaN 0x%04x", h, back);
            if ((back & 0x8000u) != (h & 0x8000u)) fail_msg("f16 NaN 0x%04x lost its sign: 0x%04x", h, back);
            continue;
        }
        double ref = f16_ref_value(h);
        if ((double)f != ref || !signbit(f) != !signbit(ref))
            fail_msg("f16 0x%04x widened to %.9g, expected %.9g", h, (double)f, ref);
        uint16_t back = fm_f32_to_f16(f);
        if (back != h) fail_msg("f16 0x%04x -> %.9g -> 0x%04x", h, (double)f, back);
    }
    assert_int_equal(n_nan, 2 * 1023);
}

static void test_bf16_all_patterns(void **state) {
    (void)state;
    int n_nan = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = fm_bf16_to_f32(h);
        if (bits_of(f) != (uint32_t)h << 16) fail_msg("bf16 0x%04x widened to bits 0x%08x", h, bits_of(f));
        uint16_t back = fm_f32_to_bf16(f);
        if (bf16_is_nan(h)) {
            n_nan++;
            if (!isnan(f)) fail_msg("bf16 0x%04x is NaN but widened to %g", h, (double)f);
            if (!bf16_is_nan(back)) fail_msg("bf16 NaN 0x%04x narrowed back to non-NaN 0x%04x", h, back);
            if ((back & 0x8000u) != (h & 0x8000u)) fail_msg("bf16 NaN 0x%04x lost its sign: 0x%04x", h, back);
            continue;
        }
        if (back != h) fail_msg("bf16 0x%04x -> %.9g -> 0x%04x", h, (double)f, back);
    }
    assert_int_equal(n_nan, 2 * 127);
}

/* NaNs whose payload lies only in the bits that narrowing drops must stay NaN (not become inf). */
static void test_nan_payload_in_low_bits(void **state) {
    (void)state;
    const uint32_t nans[] = {0x7f800001u, 0xff800001u, 0x7f80ffffu, 0x7fc00000u, 0xffffffffu, 0x7f801000u};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        float f = float_of(nans[i]);
        uint16_t b = fm_f32_to_bf16(f), h = fm_f32_to_f16(f);
        if (!bf16_is_nan(b)) fail_msg("f32 NaN 0x%08x -> bf16 0x%04x is not NaN", nans[i], b);
        if (!f16_is_nan(h)) fail_msg("f32 NaN 0x%08x -> f16 0x%04x is not NaN", nans[i], h);
        assert_int_equal(b >> 15, nans[i] >> 31);
        assert_int_equal(h >> 15, nans[i] >> 31);
    }
}

/* ---- round to nearest even --------------------------------------------------------------------- */

static void test_bf16_rne_spots(void **state) {
    (void)state;
    const struct {
        uint32_t in;
        uint16_t out;
    } cases[] = {
        {0x3f800000u, 0x3f80}, /* 1.0 */
        {0x3f808000u, 0x3f80}, /* 1 + 2^-8: tie, 0x3f80 is even -> down */
        {0x3f818000u, 0x3f82}, /* tie above the odd 0x3f81 -> up to even */
        {0x3f808001u, 0x3f81}, /* just above the tie -> up */
        {0x3f807fffu, 0x3f80}, /* just below the tie -> down */
        {0xbf818000u, 0xbf82}, /* negative tie to even */
        {0x7f7fffffu, 0x7f80}, /* FLT_MAX rounds past the largest bf16 to inf */
        {0x7f7f7fffu, 0x7f7f}, /* just below that tie stays finite */
        {0x7f800000u, 0x7f80}, /* inf */
        {0xff800000u, 0xff80}, /* -inf */
        {0x00000000u, 0x0000}, /* +0 */
        {0x80000000u, 0x8000}, /* -0 */
        {0x00010000u, 0x0001}, /* f32 subnormals map onto bf16 subnormals exactly */
        {0x00008000u, 0x0000}, /* half the smallest bf16 subnormal: tie to even 0 */
        {0x00018000u, 0x0002}, /* 1.5 x smallest: tie, odd 1 -> even 2 */
        {0x007f8000u, 0x0080}, /* tie between the largest subnormal 0x007f and the smallest normal */
        {0x40490fdbu, 0x4049}, /* pi */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = fm_f32_to_bf16(float_of(cases[i].in));
        if (got != cases[i].out) fail_msg("bf16(0x%08x) = 0x%04x, expected 0x%04x", cases[i].in, got, cases[i].out);
    }
}

/* Every tie between two adjacent bf16 values, and the f32 neighbours of each tie. */
static void test_bf16_every_tie(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 0x7f80u; h++) { /* positive finite bf16 below inf */
        for (uint32_t sign = 0; sign <= 0x8000u; sign += 0x8000u) {
            uint32_t tie = (sign | h) << 16 | 0x8000u;
            uint16_t lo = (uint16_t)(sign | h), hi = (uint16_t)(sign | (h + 1));
            uint16_t want_tie = (h & 1) ? hi : lo;
            uint16_t got = fm_f32_to_bf16(float_of(tie));
            if (got != want_tie) fail_msg("bf16 tie 0x%08x -> 0x%04x, expected 0x%04x", tie, got, want_tie);
            if ((got = fm_f32_to_bf16(float_of(tie - 1))) != lo)
                fail_msg("bf16 below tie 0x%08x -> 0x%04x, expected 0x%04x", tie - 1, got, lo);
            if ((got = fm_f32_to_bf16(float_of(tie + 1))) != hi)
                fail_msg("bf16 above tie 0x%08x -> 0x%04x, expected 0x%04x", tie + 1, got, hi);
        }
    }
}

/* Every tie between two adjacent f16 values (normal and subnormal) and its f32 neighbours. */
static void test_f16_every_tie(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 0x7bffu; h++) { /* up to the pair (0x7bfe, 0x7bff) */
        for (uint32_t sign = 0; sign <= 0x8000u; sign += 0x8000u) {
            double a = f16_ref_value((uint16_t)h), b = f16_ref_value((uint16_t)(h + 1));
            float mid = (float)((a + b) / 2); /* exact: f16 ties need 12 significant bits */
            assert_true((double)mid == (a + b) / 2);
            if (sign) mid = -mid;
            uint16_t lo = (uint16_t)(sign | h), hi = (uint16_t)(sign | (h + 1));
            uint16_t want = (h & 1) ? hi : lo;
            uint16_t got = fm_f32_to_f16(mid);
            if (got != want) fail_msg("f16 tie %.10g -> 0x%04x, expected 0x%04x", (double)mid, got, want);
            uint32_t mb = bits_of(mid);
            if ((got = fm_f32_to_f16(float_of(mb - 1))) != lo) /* one f32 ulp towards zero */
                fail_msg("f16 below tie %.10g -> 0x%04x, expected 0x%04x", (double)float_of(mb - 1), got, lo);
            if ((got = fm_f32_to_f16(float_of(mb + 1))) != hi)
                fail_msg("f16 above tie %.10g -> 0x%04x, expected 0x%04x", (double)float_of(mb + 1), got, hi);
        }
    }
}

/* A strided sweep over all f32 bit patterns against the double-precision references. */
static void test_sweep_against_reference(void **state) {
    (void)state;
    uint64_t checked = 0;
    for (uint64_t u = 0; u <= 0xffffffffull; u += 1021) { /* prime stride: every exponent, varied low bits */
        float f = float_of((uint32_t)u);
        if (isnan(f)) continue;
        uint16_t h = fm_f32_to_f16(f);
        double want = isinf(f) ? (double)f : f16_ref_round((double)f);
        double got = f16_ref_value(h);
        if (got != want || !signbit(got) != !signbit(want))
            fail_msg("f16(%.10g [0x%08x]) = 0x%04x = %.10g, expected %.10g", (double)f, (uint32_t)u, h, got, want);
        uint16_t b = fm_f32_to_bf16(f);
        double bwant = isinf(f) ? (double)f : bf16_ref_round(f);
        double bgot = (double)fm_bf16_to_f32(b);
        if (bgot != bwant || !signbit(bgot) != !signbit(bwant))
            fail_msg("bf16(%.10g [0x%08x]) = 0x%04x = %.10g, expected %.10g", (double)f, (uint32_t)u, b, bgot, bwant);
        checked++;
    }
    assert_true(checked > 4000000);
}

/* ---- f16 range: overflow and subnormals -------------------------------------------------------- */

static void test_f16_overflow(void **state) {
    (void)state;
    assert_int_equal(fm_f32_to_f16(65504.0f), 0x7bff);  /* largest finite */
    assert_int_equal(fm_f32_to_f16(65519.996f), 0x7bff); /* just below the tie */
    assert_int_equal(fm_f32_to_f16(65520.0f), 0x7c00);  /* the tie rounds to even = inf */
    assert_int_equal(fm_f32_to_f16(65536.0f), 0x7c00);
    assert_int_equal(fm_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(fm_f32_to_f16(3.4e38f), 0x7c00);
    assert_int_equal(fm_f32_to_f16(-65520.0f), 0xfc00);
    assert_int_equal(fm_f32_to_f16(-1e30f), 0xfc00);
    assert_int_equal(fm_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(fm_f32_to_f16(-INFINITY), 0xfc00);
    assert_true(isinf(fm_f16_to_f32(0x7c00)) && fm_f16_to_f32(0x7c00) > 0);
    assert_true(isinf(fm_f16_to_f32(0xfc00)) && fm_f16_to_f32(0xfc00) < 0);
}

static void test_f16_subnormals(void **state) {
    (void)state;
    const float tiny = 5.9604644775390625e-8f; /* 2^-24, the smallest f16 subnormal */
    assert_true(fm_f16_to_f32(0x0001) == tiny);
    assert_true(fm_f16_to_f32(0x8001) == -tiny);
    assert_true(fm_f16_to_f32(0x03ff) == 1023 * tiny); /* largest subnormal */
    assert_true(fm_f16_to_f32(0x0400) == 1024 * tiny); /* smallest normal 2^-14 */
    assert_int_equal(fm_f32_to_f16(tiny), 0x0001);
    assert_int_equal(fm_f32_to_f16(-tiny), 0x8001);
    assert_int_equal(fm_f32_to_f16(tiny / 2), 0x0000);        /* tie with 0 -> even 0 */
    assert_int_equal(fm_f32_to_f16(-tiny / 2), 0x8000);       /* -> -0 */
    assert_int_equal(fm_f32_to_f16(tiny / 2 * 1.0001f), 0x0001); /* just above that tie */
    assert_int_equal(fm_f32_to_f16(tiny / 4), 0x0000);
    assert_int_equal(fm_f32_to_f16(1.5f * tiny), 0x0002);     /* tie, odd 1 -> 2 */
    assert_int_equal(fm_f32_to_f16(2.5f * tiny), 0x0002);     /* tie, even 2 stays */
    assert_int_equal(fm_f32_to_f16(1023.5f * tiny), 0x0400);  /* tie at the top of the subnormals -> normal */
    assert_int_equal(fm_f32_to_f16(1e-30f), 0x0000);
    assert_int_equal(fm_f32_to_f16(float_of(0x00000001u)), 0x0000); /* f32 subnormal */
    assert_int_equal(fm_f32_to_f16(float_of(0x80000001u)), 0x8000);
    assert_int_equal(fm_f32_to_f16(0.0f), 0x0000);
    assert_int_equal(fm_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(fm_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(fm_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(fm_f32_to_f16(0.333333343f), 0x3555);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_all_patterns),
        cmocka_unit_test(test_bf16_all_patterns),
        cmocka_unit_test(test_nan_payload_in_low_bits),
        cmocka_unit_test(test_bf16_rne_spots),
        cmocka_unit_test(test_bf16_every_tie),
        cmocka_unit_test(test_f16_every_tie),
        cmocka_unit_test(test_sweep_against_reference),
        cmocka_unit_test(test_f16_overflow),
        cmocka_unit_test(test_f16_subnormals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
