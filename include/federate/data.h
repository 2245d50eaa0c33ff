/* Data sets in memory as normalized float images (N, C, H, W) and int32 labels:
 * IDX (MNIST, Fashion-MNIST; raw or .gz), CIFAR-10 binary batches, augmentation,
 * and seeded batching over an index list (so clients share one copy of the data). */
#ifndef FEDERATE_DATA_H
#define FEDERATE_DATA_H
#include <stddef.h>
#include <stdint.h>
#include "federate/rng.h"

typedef struct fed_dataset {
    int n;             /* number of examples */
    int c, h, w;       /* image shape */
    int num_classes;
    float *x;          /* n * c * h * w floats, example-major, CHW inside */
    int32_t *y;        /* n labels in [0, num_classes) */
} fed_dataset;

/* Reads an IDX image file (magic 0x00000803) and label file (0x00000801); either
 * may be gzip-compressed (detected by content). Pixels become x = byte / 255.
 * Errors name the file and the problem (bad magic, truncated, count mismatch). */
int fed_idx_read(const char *images_path, const char *labels_path, fed_dataset *out);
/* Writes raw (uncompressed) IDX files from d (pixels = round(x * 255) clamped). */
int fed_idx_write(const fed_dataset *d, const char *images_path, const char *labels_path);

/* Reads CIFAR-10 binary batches (records of 1 label byte + 3072 pixel bytes, CHW),
 * concatenated in the order given. Pixels become byte / 255. */
int fed_cifar_read(const char *const *paths, int npaths, fed_dataset *out);

/* Loads a named data set split: name "mnist" | "fashion-mnist" | "cifar10",
 * train = 1 for the training split, 0 for test. data_dir NULL means
 * $FEDERATE_DATA or ~/.cache/federate. Files looked up:
 *   mnist:         DIR/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
 *   fashion-mnist: DIR/fashion-mnist/..., then /usr/share/datasets/fashion-mnist/...
 *   cifar10:       DIR/cifar10/data_batch_{1..5}.bin, test_batch.bin
 * Normalizes with the data set's usual per-channel mean/std. A missing data set
 * is FED_ENOTFOUND with the command that fetches it in fed_last_error(). */
int fed_dataset_load(const char *name, int train, const char *data_dir, fed_dataset *out);
/* The normalized value of a black pixel (byte 0) in each of the named data set's
 * channels, into fill[0 .. c): what augmentation pads with, as torchvision pads
 * before it normalizes. 0, or FED_ENOTFOUND for an unknown name and FED_EINVAL when
 * c is less than the set's channel count. */
int fed_dataset_black(const char *name, float *fill, int c);
/* The default data directory ($FEDERATE_DATA or ~/.cache/federate) into buf. */
int fed_data_dir(char *buf, size_t size);
/* x = (x - mean[c]) / std[c] for each channel c. */
void fed_dataset_normalize(fed_dataset *d, const float *mean, const float *std);
/* Copies the listed examples into a new data set. */
int fed_dataset_subset(const fed_dataset *d, const uint32_t *idx, size_t n, fed_dataset *out);
void fed_dataset_free(fed_dataset *d);   /* frees x and y, zeroes *d; NULL ok */
size_t fed_dataset_example_size(const fed_dataset *d);   /* c * h * w */

/* Augmentation, applied per example. Zeros mean "off". */
typedef struct fed_augment {
    int crop_pad;        /* random crop after padding by this many pixels */
    int hflip;           /* random horizontal flip with probability 1/2 */
    float rotate_deg;    /* random rotation in [-deg, deg], bilinear */
    const float *fill;   /* per channel, the value of pixels from outside the image:
                            padding and rotated-in corners (NULL: 0) */
} fed_augment;
/* out (c*h*w) = augmented in; in and out must not overlap. */
void fed_augment_apply(const fed_augment *a, const float *in, float *out, int c, int h, int w, fed_rng *r);
/* out = in rotated by deg degrees about the image center (counter-clockwise as
 * displayed), bilinear, zero fill: the rotation fed_augment_apply draws, at a fixed
 * angle. in and out must not overlap. */
void fed_augment_rotate(const float *in, float *out, int c, int h, int w, float deg);

/* Iterates over a subset of a data set in batches. */
typedef struct fed_batcher {
    const fed_dataset *data;
    uint32_t *order;      /* owned copy of the index list, shuffled per epoch */
    size_t n;
    size_t pos;
    int batch_size;
    int drop_last;
} fed_batcher;

/* idx NULL means all examples 0..d->n-1. */
int fed_batcher_init(fed_batcher *b, const fed_dataset *d, const uint32_t *idx, size_t n,
                     int batch_size, int drop_last);
/* Starts an epoch; shuffles the order with r when r is not NULL. */
void fed_batcher_reset(fed_batcher *b, fed_rng *r);
/* Copies the next batch into x (batch_size * example_size floats) and y.
 * Returns the number of examples (0 at the end of the epoch). When aug is
 * not NULL each example is augmented with the stream r. */
int fed_batcher_next(fed_batcher *b, float *x, int32_t *y, const fed_augment *aug, fed_rng *r);
size_t fed_batcher_batches(const fed_batcher *b);   /* batches per epoch */
void fed_batcher_free(fed_batcher *b);

#endif
