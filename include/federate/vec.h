/* Flat-vector kernels: everything federated (averaging, clipping, noise, ...) is
 * arithmetic on flat float vectors, written once here. Loops are plain so the
 * compiler vectorizes them; reductions accumulate in double in a fixed order. */
#ifndef FEDERATE_VEC_H
#define FEDERATE_VEC_H
#include <stddef.h>

void fed_vec_zero(float *x, size_t n);
void fed_vec_copy(float *restrict y, const float *restrict x, size_t n);
void fed_vec_scale(float *x, float a, size_t n);
/* y += a * x */
void fed_vec_axpy(float *restrict y, float a, const float *restrict x, size_t n);
/* y = a * x + b * y */
void fed_vec_axpby(float *restrict y, float a, const float *restrict x, float b, size_t n);
/* z = x - y */
void fed_vec_sub(float *restrict z, const float *restrict x, const float *restrict y, size_t n);
void fed_vec_add(float *restrict z, const float *restrict x, const float *restrict y, size_t n);
double fed_vec_dot(const float *x, const float *y, size_t n);
double fed_vec_norm2(const float *x, size_t n);   /* Euclidean norm */
double fed_vec_sum(const float *x, size_t n);
/* Scale x so its L2 norm is at most c; returns the norm before clipping. */
double fed_vec_clip_norm(float *x, size_t n, double c);
/* out = sum_i w[i] * xs[i] over k vectors, in index order (deterministic). */
void fed_vec_weighted_sum(float *restrict out, const float *const *xs, const double *w, size_t k, size_t n);
/* 1 if every element is finite. */
int fed_vec_all_finite(const float *x, size_t n);

#endif
