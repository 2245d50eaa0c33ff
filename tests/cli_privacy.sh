#!/usr/bin/env bash
# federate privacy end to end: epsilon of DP-SGD for TF Privacy's MNIST tutorial and two
# other settings against an independent 30-digit mpmath computation (the snippet is at
# the end of this file), the improved conversion never above the classic one, the
# calibrated noise multiplier being the smallest that meets the target, and bad flags
# named in the errors.
set -u
BIN="${FEDERATE_BIN:-build/federate}"
fail() { echo "FAIL: $*"; exit 1; }

"$BIN" privacy --help >/dev/null 2>&1 || { echo "SKIP: $BIN has no privacy command"; exit 77; }

# value of "key: value" in $1
get() { printf '%s\n' "$1" | sed -n "s/^$2: //p"; }
# |a - b| <= tol
near() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= t) }'; }
# a <= b
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }

mnist="--dataset-size 60000 --batch-size 256 --epochs 60 --delta 1e-5"

# TF Privacy tutorials/README.md: N=60000, B=256, z=1.1, 60 epochs, delta=1e-5 -> eps 3.01
# (classic conversion, TF Privacy's orders 1.1..10.9, 12..63). We use dp_accounting's
# default orders, which contain the best order 8.8 too, so the classic value is the same
# to 2 decimals. Independent values (mpmath, snippet below): classic 3.00838104683 at
# order 8.8, improved 2.59665552868 at order 8.1.
out="$("$BIN" privacy $mnist --noise-multiplier 1.1 --conversion classic)" || fail "privacy failed: $out"
echo "$out"
[ "$(get "$out" steps)" = 14063 ] || fail "steps: want ceil(60 * 60000 / 256) = 14063"
near "$(get "$out" sampling_rate)" 0.00426666667 1e-10 || fail "sampling_rate: want 256/60000"
near "$(get "$out" epsilon)" 3.00838104683 2e-6 || fail "classic epsilon: want 3.008381"
near "$(get "$out" epsilon)" 3.01 0.005 || fail "classic epsilon is not TF Privacy's 3.01"
[ "$(get "$out" order)" = 8.8 ] || fail "classic order: want 8.8"
classic="$(get "$out" epsilon)"

out="$("$BIN" privacy $mnist --noise-multiplier 1.1)" || fail "privacy failed: $out"
echo "$out"
near "$(get "$out" epsilon)" 2.59665552868 2e-6 || fail "improved epsilon: want 2.596656"
[ "$(get "$out" order)" = 8.1 ] || fail "improved order: want 8.1"
le "$(get "$out" epsilon)" "$classic" || fail "improved conversion above the classic one"
out2="$("$BIN" privacy $mnist --noise-multiplier 1.1 --conversion improved)" || fail "privacy failed"
[ "$out" = "$out2" ] || fail "--conversion improved is not the default"

# N=100000, B=1000, z=2, 100 epochs (10^4 steps), delta=1e-6:
# mpmath classic 2.98570797804 at 10.6, improved 2.62914189859 at 9.8.
out="$("$BIN" privacy --dataset-size 100000 --batch-size 1000 --noise-multiplier 2 --epochs 100 --delta 1e-6 \
       --conversion classic)" || fail "privacy failed: $out"
[ "$(get "$out" steps)" = 10000 ] || fail "steps: want 10000"
near "$(get "$out" epsilon)" 2.98570797804 2e-6 || fail "epsilon: want 2.985708 ($out)"
[ "$(get "$out" order)" = 10.6 ] || fail "order: want 10.6"
out="$("$BIN" privacy --dataset-size 100000 --batch-size 1000 --noise-multiplier 2 --epochs 100 --delta 1e-6)" \
    || fail "privacy failed: $out"
near "$(get "$out" epsilon)" 2.62914189859 2e-6 || fail "epsilon: want 2.629142 ($out)"

# --target-epsilon: the printed multiplier meets the target, reproduces the printed
# epsilon when given back, and 1e-4 less noise would not meet it.
for conv in improved classic; do
    out="$("$BIN" privacy $mnist --target-epsilon 3 --conversion $conv)" || fail "calibration failed: $out"
    echo "$out"
    z="$(get "$out" noise_multiplier)"
    [ -n "$z" ] || fail "no noise_multiplier line"
    le "$(get "$out" epsilon)" 3 || fail "$conv: epsilon above the target"
    [ -n "$(get "$out" order)" ] || fail "no order line"
    [ "$(get "$out" steps)" = 14063 ] || fail "steps with --target-epsilon"
    back="$("$BIN" privacy $mnist --noise-multiplier "$z" --conversion $conv)" || fail "privacy failed"
    [ "$(get "$back" epsilon)" = "$(get "$out" epsilon)" ] || fail "$conv: --noise-multiplier $z gives another epsilon"
    zl="$(awk -v z="$z" 'BEGIN { printf "%.9g", z * (1 - 1e-4) }')"
    less="$("$BIN" privacy $mnist --noise-multiplier "$zl" --conversion $conv)" || fail "privacy failed"
    le "$(get "$less" epsilon)" 3 && fail "$conv: $zl (less noise) also meets epsilon 3"
done
# the classic conversion needs more noise for the same target
zi="$(get "$("$BIN" privacy $mnist --target-epsilon 2)" noise_multiplier)"
zc="$(get "$("$BIN" privacy $mnist --target-epsilon 2 --conversion classic)" noise_multiplier)"
le "$zi" "$zc" || fail "improved conversion needs more noise ($zi) than classic ($zc)"

out="$("$BIN" privacy $mnist --noise-multiplier 1.1 --timing)" || fail "--timing failed"
ms="$(get "$out" accountant_ms)"
echo "accountant_ms: $ms"
le "$ms" 50 || fail "accountant_ms $ms (target 5 ms)"

# Errors name the flag and exit 2.
# --secure-clients: one client of privacy.mode distributed-dp-sgd (600 records, 3 a step,
# 100 shares, 16 bits, cnn-dp's 26,010 parameters). Its general subsampling bound is
# never below the tight sampled Gaussian at the same effective noise z c / (c + sqrt d),
# the run's accountant gives the same figure (tests/test_fl_ddp_sgd.c), and the
# calibrated z is the smallest that meets the target.
ddp="--dataset-size 600 --batch-size 3 --epochs 10 --delta 1e-5 --secure-clients 100 --dim 26010"
out="$("$BIN" privacy $ddp --noise-multiplier 1.3)" || fail "privacy --secure-clients failed: $out"
echo "$out"
[ "$(get "$out" steps)" = 2000 ] || fail "--secure-clients steps: want 2000"
e_ddp="$(get "$out" epsilon)"
zeff="$(awk 'BEGIN { c = 32768; printf "%.12g", 1.3 * c / (c + sqrt(26010)) }')"
e_gauss="$(get "$("$BIN" privacy --dataset-size 600 --batch-size 3 --epochs 10 --delta 1e-5 --noise-multiplier "$zeff")" epsilon)"
echo "sampled Gaussian at z $zeff: $e_gauss; distributed discrete Gaussian: $e_ddp"
le "$e_gauss" "$e_ddp" || fail "--secure-clients epsilon $e_ddp below the tight Gaussian's $e_gauss"
le "$e_ddp" "$(awk -v g="$e_gauss" 'BEGIN { print g * 1.3 }')" || fail "--secure-clients epsilon $e_ddp far above $e_gauss"
out="$("$BIN" privacy $ddp --target-epsilon 1)" || fail "privacy --secure-clients --target-epsilon failed"
echo "$out"
z="$(get "$out" noise_multiplier)"
le "$(get "$out" epsilon)" 1 || fail "--secure-clients: calibrated z misses the target"
zl="$(awk -v z="$z" 'BEGIN { printf "%.9g", z * (1 - 1e-4) }')"
le "$(get "$("$BIN" privacy $ddp --noise-multiplier "$zl")" epsilon)" 1 && fail "--secure-clients: $zl also meets 1"
fewer="$(get "$("$BIN" privacy $ddp --noise-multiplier 1.3 --bits 8)" epsilon)"
le "$e_ddp" "$fewer" || fail "--bits 8 (sqrt(d) larger against the clip) gave less epsilon than 16"

expect_err() { # flag-in-message args...
    local want="$1"; shift
    local err
    err="$("$BIN" privacy "$@" 2>&1 >/dev/null)"
    local rc=$?
    [ $rc -ne 0 ] || fail "privacy $* succeeded"
    printf '%s' "$err" | grep -q -- "$want" || fail "privacy $*: error does not name $want: $err"
}
expect_err --dataset-size --batch-size 256 --noise-multiplier 1.1 --epochs 60 --delta 1e-5
expect_err --batch-size --dataset-size 60000 --noise-multiplier 1.1 --epochs 60 --delta 1e-5
expect_err --epochs --dataset-size 60000 --batch-size 256 --noise-multiplier 1.1 --delta 1e-5
expect_err --delta --dataset-size 60000 --batch-size 256 --noise-multiplier 1.1 --epochs 60
expect_err --noise-multiplier $mnist
expect_err --target-epsilon $mnist
expect_err --target-epsilon $mnist --noise-multiplier 1.1 --target-epsilon 3
expect_err --batch-size --dataset-size 100 --batch-size 256 --noise-multiplier 1.1 --epochs 60 --delta 1e-5
expect_err --delta $mnist --noise-multiplier 1.1 --delta 0
expect_err --delta $mnist --noise-multiplier 1.1 --delta 1
expect_err --delta $mnist --noise-multiplier 1.1 --delta 1.5
expect_err --epochs --dataset-size 60000 --batch-size 256 --noise-multiplier 1.1 --epochs 0 --delta 1e-5
expect_err --noise-multiplier $mnist --noise-multiplier -1
expect_err --target-epsilon $mnist --target-epsilon 0
expect_err --conversion $mnist --noise-multiplier 1.1 --conversion exact
expect_err --dataset-size $mnist --noise-multiplier 1.1 --dataset-size abc
expect_err --dim $mnist --noise-multiplier 1.1 --secure-clients 100
expect_err --secure-clients $mnist --noise-multiplier 1.1 --dim 1000
expect_err --bits $ddp --noise-multiplier 1.1 --bits 60
echo "cli_privacy: ok"
exit 0

# The independent reference values above (python3 with mpmath 1.3; run as
# `python3 ref.py N B Z EPOCHS DELTA`; takes ~7 s):
#
# import sys, math
# from mpmath import mp, mpf, quad, exp, log, sqrt, pi, binomial, inf, log1p
# mp.dps = 30
# def A(q, s, a):  # Mironov, Talwar, Zhang 2019: A_alpha of the sampled Gaussian
#     q, s = mpf(q), mpf(s)
#     if a == int(a):
#         a = int(a)
#         return sum(binomial(a, i) * q**i * (1-q)**(a-i) * exp(mpf(i*i - i) / (2*s*s))
#                    for i in range(a+1))
#     a = mpf(a)
#     mu0 = lambda z: exp(-z*z / (2*s*s)) / (s*sqrt(2*pi))
#     f = lambda z: mu0(z) * ((1-q) + q*exp((2*z-1) / (2*s*s)))**a
#     return quad(f, [-inf, -10*s, 0, 0.5, 10*s, 40*s, inf])
# orders = [1 + x/10 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512, 1024]
# N, B, z, E, d = [float(x) for x in sys.argv[1:6]]
# steps = math.ceil(E * N / B)
# bc = bi = (mp.inf, None)
# for a in orders:
#     r = steps * log(A(B / N, z, a)) / (a - 1)
#     ec = r + log(1/mpf(d)) / (a - 1)                                   # classic
#     ei = r + log1p(-mpf(1)/a) - log(mpf(d)*a) / (a - 1) if a > 1.01 else mp.inf  # improved
#     bc = min(bc, (ec, a), key=lambda t: t[0]); bi = min(bi, (ei, a), key=lambda t: t[0])
# print(steps, bc, bi)
