/* Setting up a simulated federation from a config: the data set (or the
 * per-client folders written by `federate partition`), each client's index
 * lists, and each client's capability (speed factor). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "federate/error.h"
#include "federate/fl.h"
#include "federate/rng.h"

static int draw_capabilities(const fed_config *cfg, fed_federation *fed) {
    fed->capability = malloc((size_t)fed->num_clients * sizeof(double));
    if (!fed->capability) return fed_error(FED_ENOMEM, "federation: out of memory");
    for (int k = 0; k < fed->num_clients; k++) {
        fed_rng r;
        fed_rng_init(&r, cfg->seed, 0, (uint64_t)k, FED_RNG_USER + 1);
        double c = 1.0, s = cfg->capability_spread;
        if (strcmp(cfg->capability, "uniform") == 0) {
            c = 1.0 - s + 2.0 * s * fed_rng_uniform(&r);   /* U[1 - s, 1 + s] */
        } else if (strcmp(cfg->capability, "lognormal") == 0) {
            c = exp(s * fed_rng_normal_d(&r));              /* median 1 */
        }
        fed->capability[k] = c > 0.05 ? c : 0.05;
    }
    return 0;
}

int fed_federation_build(const fed_config *cfg, fed_federation *fed) {
    memset(fed, 0, sizeof *fed);
    int rc;
    const char *root = cfg->data_root[0] ? cfg->data_root : NULL;
    if ((rc = fed_dataset_load(cfg->dataset, 0, root, &fed->test))) return rc;
    if (cfg->data_dir[0]) {
        /* already distributed: each client's lists cover only its own folder */
        if ((rc = fed_partition_read_dirs(cfg->data_dir, &fed->train, &fed->part))) goto fail;
        if (fed->part.num_clients != cfg->num_clients) {
            rc = fed_error(FED_EINVAL, "data_dir %s holds %d clients but num_clients is %d", cfg->data_dir,
                           fed->part.num_clients, cfg->num_clients);
            goto fail;
        }
        if (fed->train.c != fed->test.c || fed->train.h != fed->test.h || fed->train.w != fed->test.w) {
            rc = fed_error(FED_ESHAPE, "data_dir %s: images are %dx%dx%d, the %s test set's are %dx%dx%d", cfg->data_dir,
                           fed->train.c, fed->train.h, fed->train.w, cfg->dataset, fed->test.c, fed->test.h, fed->test.w);
            goto fail;
        }
    } else {
        if ((rc = fed_dataset_load(cfg->dataset, 1, root, &fed->train))) goto fail;
        fed_partition_opts po = {0};
        if ((rc = fed_partition_scheme_from_name(cfg->data_distribution, &po.scheme))) goto fail;
        po.num_clients = cfg->num_clients;
        po.alpha = cfg->non_iid_alpha;
        po.shards_per_client = cfg->shards_per_client;
        po.quantity_sigma = cfg->quantity_sigma;
        po.local_test_fraction = cfg->local_test_fraction;
        po.seed = cfg->seed;
        if ((rc = fed_partition_make(&fed->train, &po, &fed->part))) goto fail;
    }
    fed->num_clients = fed->part.num_clients;
    if ((rc = draw_capabilities(cfg, fed))) goto fail;
    return 0;
fail:
    fed_federation_free(fed);
    return rc;
}

void fed_federation_free(fed_federation *fed) {
    if (!fed) return;
    fed_dataset_free(&fed->train);
    fed_dataset_free(&fed->test);
    fed_partition_free(&fed->part);
    free(fed->capability);
    memset(fed, 0, sizeof *fed);
}

int fed_federation_build_sizes(const fed_config *cfg, int num_clients, const size_t *train_n, const size_t *test_n,
                               const int32_t *label_counts, fed_federation *fed) {
    memset(fed, 0, sizeof *fed);
    if (num_clients < 1 || !train_n || !test_n) return fed_error(FED_EINVAL, "federation: no client sizes");
    int rc;
    const char *root = cfg->data_root[0] ? cfg->data_root : NULL;
    if ((rc = fed_dataset_load(cfg->dataset, 0, root, &fed->test))) return rc;
    fed->train.c = fed->test.c;
    fed->train.h = fed->test.h;
    fed->train.w = fed->test.w;
    fed->train.num_classes = fed->test.num_classes;
    int C = fed->test.num_classes;
    fed_partition *p = &fed->part;
    p->num_clients = num_clients;
    p->num_classes = C;
    p->train = calloc((size_t)num_clients, sizeof *p->train);
    p->test = calloc((size_t)num_clients, sizeof *p->test);
    p->train_n = calloc((size_t)num_clients, sizeof *p->train_n);
    p->test_n = calloc((size_t)num_clients, sizeof *p->test_n);
    p->label_counts = calloc((size_t)num_clients * (size_t)C, sizeof *p->label_counts);
    if (!p->train || !p->test || !p->train_n || !p->test_n || !p->label_counts) {
        rc = fed_error(FED_ENOMEM, "federation: out of memory for %d clients", num_clients);
        goto fail;
    }
    memcpy(p->train_n, train_n, (size_t)num_clients * sizeof *train_n);
    memcpy(p->test_n, test_n, (size_t)num_clients * sizeof *test_n);
    if (label_counts) memcpy(p->label_counts, label_counts, (size_t)num_clients * (size_t)C * sizeof *label_counts);
    fed->num_clients = num_clients;
    if ((rc = draw_capabilities(cfg, fed))) goto fail;
    return 0;
fail:
    fed_federation_free(fed);
    return rc;
}

int fed_model_for_config(const fed_config *cfg, const fed_dataset *d, fed_model **out) {
    fed_model_opts o;
    fed_model_opts_default(&o);
    o.in_c = d->c;
    o.in_h = d->h;
    o.in_w = d->w;
    o.num_classes = d->num_classes;
    if (strcmp(cfg->model, "mlp") == 0) {
        int rc = fed_config_hidden(cfg, o.hidden);
        if (rc < 0) return rc;
        o.n_hidden = rc;
    }
    if (strcmp(cfg->norm, "group") == 0) o.norm = FED_NORM_GROUP;
    int rc = fed_model_create(out, cfg->model, &o);
    if (!rc) fed_model_set_fast_kernels(*out, strcmp(cfg->kernels, "reference") != 0);
    return rc;
}
