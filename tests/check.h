/* Minimal assertions for the ctest executables: each test is a program that
 * returns non-zero on the first failed check, naming the file, line and values. */
#ifndef FEDERATE_TEST_CHECK_H
#define FEDERATE_TEST_CHECK_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); exit(1); } } while (0)
#define CHECK_OK(expr) do { int rc_ = (expr); if (rc_ != 0) { \
    fprintf(stderr, "%s:%d: %s returned %d (%s): %s\n", __FILE__, __LINE__, #expr, rc_, \
            fed_strerror(rc_), fed_last_error()); exit(1); } } while (0)
#define CHECK_EQ_INT(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); if (a_ != b_) { \
    fprintf(stderr, "%s:%d: %s == %s failed: %lld vs %lld\n", __FILE__, __LINE__, #a, #b, a_, b_); exit(1); } } while (0)
#define CHECK_NEAR(a, b, tol) do { double a_ = (double)(a), b_ = (double)(b); \
    if (!(fabs(a_ - b_) <= (tol))) { \
    fprintf(stderr, "%s:%d: |%s - %s| <= %g failed: %.9g vs %.9g\n", __FILE__, __LINE__, #a, #b, \
            (double)(tol), a_, b_); exit(1); } } while (0)
/* Relative closeness with an absolute floor, for comparing against references. */
#define CHECK_CLOSE(a, b, rtol, atol) do { double a_ = (double)(a), b_ = (double)(b); \
    if (!(fabs(a_ - b_) <= (atol) + (rtol) * fabs(b_))) { \
    fprintf(stderr, "%s:%d: %s ~ %s failed: %.9g vs %.9g\n", __FILE__, __LINE__, #a, #b, a_, b_); exit(1); } } while (0)
#define TEST_PASS(name) do { printf("%s: ok\n", name); return 0; } while (0)

#endif
