/* federate partition: splits a data set's training split into per-client folders
 * of IDX files (IID, Dirichlet label skew after Hsu et al. 2019, shards after
 * McMahan et al. 2017, or log-normal quantity skew) that runs read with data_dir. */
#include <stdlib.h>
#include <string.h>
#include "args.h"
#include "common.h"
#include "federate/partition.h"

static const char *const datasets[] = {"mnist", "fashion-mnist", "cifar10", NULL};
static const char *const schemes[] = {"iid", "dirichlet", "shards", "quantity", NULL};

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

static int bad(const char *fmt_flag, const char *why) {
    fprintf(stderr, "federate partition: %s %s\n", fmt_flag, why);
    return 2;
}

int cmd_partition(int argc, char **argv) {
    const char *dataset = "mnist", *scheme_name = NULL, *out_dir = NULL, *data_dir = NULL;
    int clients = 0, spc = 2;
    double alpha = 0.5, sigma = 1.0, ltf = 0.0;
    uint64_t seed = 0;
    const arg_spec specs[] = {
        {"dataset", ARG_STRING, &dataset, "data set whose training split is divided (default mnist)", NO_RANGE, datasets},
        {"clients", ARG_INT, &clients, "number of clients (required)", 1, 99999, NULL},
        {"scheme", ARG_STRING, &scheme_name, "how examples are divided (required)", NO_RANGE, schemes},
        {"alpha", ARG_FLOAT, &alpha, "dirichlet: concentration, smaller is more skewed (default 0.5)", NO_RANGE, NULL},
        {"shards-per-client", ARG_INT, &spc, "shards: label-sorted shards per client (default 2)", 1, 1 << 20, NULL},
        {"sigma", ARG_FLOAT, &sigma, "quantity: log-normal sigma of client sizes (default 1.0)", 0, 100, NULL},
        {"local-test-fraction", ARG_FLOAT, &ltf, "share of each client's examples held out locally (default 0)", 0, 1,
         NULL},
        {"seed", ARG_U64, &seed, "random seed (default 0)", NO_RANGE, NULL},
        {"out", ARG_STRING, &out_dir, "output directory (required)", NO_RANGE, NULL},
        {"data-dir", ARG_STRING, &data_dir, "data directory (default $FEDERATE_DATA or ~/.cache/federate)", NO_RANGE,
         NULL},
        ARG_END,
    };
    int rc = args_parse("partition", "--clients K --scheme SCHEME --out DIR [FLAGS]", specs, argc, argv, 2, NULL, 0,
                        NULL);
    if (rc) return rc > 0 ? 0 : 2;
    if (clients < 1) return bad("--clients", "is required (the number of clients)");
    if (!scheme_name) return bad("--scheme", "is required: iid, dirichlet, shards or quantity");
    if (!out_dir || !*out_dir) return bad("--out", "is required (the output directory)");
    if (!(alpha > 0.0)) return bad("--alpha", "must be > 0");
    if (!(ltf < 1.0)) return bad("--local-test-fraction", "must be in [0, 1)");

    fed_partition_opts o;
    fed_partition_opts_default(&o);
    if ((rc = fed_partition_scheme_from_name(scheme_name, &o.scheme))) return cli_fail("partition", "bad --scheme", rc);
    o.num_clients = clients;
    o.alpha = alpha;
    o.shards_per_client = spc;
    o.quantity_sigma = sigma;
    o.local_test_fraction = ltf;
    o.seed = seed;

    fed_dataset d = {0};
    if ((rc = fed_dataset_load(dataset, 1, data_dir, &d))) return cli_fail("partition", "cannot load the data set", rc);
    int status = 1;
    fed_partition p = {0};
    size_t *sizes = NULL;
    /* Checked here so the messages name the flags rather than the library's fields. */
    if (clients > d.n) {
        fprintf(stderr, "federate partition: --clients %d exceeds the %d examples of %s\n", clients, d.n, dataset);
        status = 2;
        goto out;
    }
    if (o.scheme == FED_PART_SHARDS && (long long)clients * spc > d.n) {
        fprintf(stderr, "federate partition: --clients * --shards-per-client = %lld shards cannot be cut from %d examples\n",
                (long long)clients * spc, d.n);
        status = 2;
        goto out;
    }
    if ((rc = fed_partition_make(&d, &o, &p))) { cli_fail("partition", "cannot partition", rc); goto out; }
    if ((rc = fed_partition_write_dirs_named(&d, &p, &o, dataset, out_dir))) {
        cli_fail("partition", "cannot write the client folders", rc);
        goto out;
    }

    sizes = malloc((size_t)clients * sizeof *sizes);
    if (!sizes) { fprintf(stderr, "federate partition: out of memory\n"); goto out; }
    double distinct = 0;
    for (int k = 0; k < clients; k++) {
        const int32_t *lc = p.label_counts + (size_t)k * (size_t)p.num_classes;
        int nl = 0;
        for (int c = 0; c < p.num_classes; c++) nl += lc[c] > 0;
        distinct += nl;
        sizes[k] = p.train_n[k] + p.test_n[k];
        if (clients <= 20) {
            printf("client_%05d  train %zu  test %zu  labels %d  counts", k, p.train_n[k], p.test_n[k], nl);
            for (int c = 0; c < p.num_classes; c++) printf("%c%d", c ? ',' : ' ', (int)lc[c]);
            printf("\n");
        }
    }
    qsort(sizes, (size_t)clients, sizeof *sizes, cmp_size);
    double median = clients % 2 ? (double)sizes[clients / 2]
                                : 0.5 * ((double)sizes[clients / 2 - 1] + (double)sizes[clients / 2]);
    printf("clients: %d (%s, %s)\n", clients, dataset, fed_partition_scheme_name(o.scheme));
    printf("examples per client: min %zu  median %g  max %zu\n", sizes[0], median, sizes[clients - 1]);
    printf("mean distinct labels per client: %.2f of %d\n", distinct / clients, p.num_classes);
    printf("wrote %s\n", out_dir);
    status = 0;
out:
    free(sizes);
    fed_partition_free(&p);
    fed_dataset_free(&d);
    return status;
}
