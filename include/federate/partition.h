/* Splitting a data set among clients: IID, Dirichlet label skew (Hsu et al.
 * 2019), pathological shards (McMahan et al. 2017: sorted by label, S shards per
 * client), quantity skew (log-normal sizes). A client is an index list into the
 * shared data set, split again into its own train and local-test parts. Also
 * per-client folders of IDX files, written by `federate partition` and read by
 * runs with data_dir, where each client's data comes only from its folder. */
#ifndef FEDERATE_PARTITION_H
#define FEDERATE_PARTITION_H
#include <stddef.h>
#include <stdint.h>
#include "federate/data.h"

/* Append-only. */
enum fed_partition_scheme { FED_PART_IID = 0, FED_PART_DIRICHLET = 1, FED_PART_SHARDS = 2, FED_PART_QUANTITY = 3 };

typedef struct fed_partition {
    int num_clients;
    uint32_t **train;      /* train[k]: indices of client k's training examples */
    size_t *train_n;
    uint32_t **test;       /* test[k]: client k's local test examples */
    size_t *test_n;
    int32_t *label_counts; /* num_clients * num_classes histogram of train labels */
    int num_classes;
} fed_partition;

typedef struct fed_partition_opts {
    int scheme;
    int num_clients;
    double alpha;              /* Dirichlet concentration */
    int shards_per_client;     /* shards scheme (2) */
    double quantity_sigma;     /* quantity scheme: log-normal sigma of sizes (1.0) */
    double local_test_fraction;/* share of each client's examples held out (0 = none) */
    uint64_t seed;
} fed_partition_opts;

int fed_partition_scheme_from_name(const char *name, int *scheme);
/* "iid" | "dirichlet" | "shards" | "quantity"; "unknown" for other values. */
const char *fed_partition_scheme_name(int scheme);
/* IID, 10 clients, alpha 0.5, 2 shards per client, sigma 1.0, no local test, seed 0. */
void fed_partition_opts_default(fed_partition_opts *o);
/* Every example goes to exactly one client; every client gets at least one
 * training example (FED_EINVAL naming the parameters when impossible). A client
 * that a Dirichlet draw leaves empty takes the last example of the then-largest
 * client (ties: lowest index), so the rule costs determinism nothing. Streams are
 * (seed, 0, id, FED_RNG_PARTITION): the result depends on d's labels and o only. */
int fed_partition_make(const fed_dataset *d, const fed_partition_opts *o, fed_partition *out);
void fed_partition_free(fed_partition *p);

/* Writes DIR/client_NNNNN/{train,test}-{images-idx3,labels-idx1}-ubyte per
 * client plus DIR/partition.json (scheme, parameters, sizes). The test files
 * exist only for clients with local test examples. Creates DIR and its parents. */
int fed_partition_write_dirs(const fed_dataset *d, const fed_partition *p, const fed_partition_opts *o,
                             const char *dir);
/* The same, recording dataset_name ("mnist" | "fashion-mnist" | "cifar10" or
 * anything else; NULL = "unknown") in partition.json. For the three named data
 * sets d holds images normalized as fed_dataset_load leaves them: they are
 * un-normalized with that set's mean/std before being stored as bytes, and
 * fed_partition_read_dirs normalizes them again (pixels come back within
 * 0.5/255/std). Other names store x as given (expected in [0, 1]). o may be NULL. */
int fed_partition_write_dirs_named(const fed_dataset *d, const fed_partition *p, const fed_partition_opts *o,
                                   const char *dataset_name, const char *dir);
/* Reads such a directory: all clients' examples concatenated into *data (in
 * client order, each client's train then test examples) and a partition whose
 * lists index into it; client k's lists cover exactly the examples read from its
 * own folder. mnist / fashion-mnist / cifar10 images are normalized as
 * fed_dataset_load does. A missing or damaged folder or file is an error naming
 * the client folder and file (FED_EIO, FED_EFORMAT), never a crash. */
int fed_partition_read_dirs(const char *dir, fed_dataset *data, fed_partition *out);
/* The data set name recorded in DIR/partition.json into buf. */
int fed_partition_dir_dataset(const char *dir, char *buf, size_t size);

#endif
