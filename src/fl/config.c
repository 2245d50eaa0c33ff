/* Run configuration: one table row per fed_config field drives defaults-free
 * parsing (libyaml events), --set overrides, range/choice checks, YAML output and
 * docs/config.md, so a new key is one new row and cannot be half-supported. */
#include "federate/compress.h"
#include "federate/config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "federate/error.h"
#include "federate/strategy.h"

#define FIELD(f) offsetof(fed_config, f), sizeof(((fed_config *)0)->f)
#define NO_RANGE 1, 0
#define BIG 10000000 /* upper bound for counts: far beyond any simulation, far below INT_MAX */

static const char *const datasets[] = {"mnist", "fashion-mnist", "cifar10", NULL};
static const char *const distributions[] = {"iid", "dirichlet", "shards", "quantity", NULL};
static const char *const selections[] = {"uniform", "stratified", "capability", "speed", "oort", "power-of-choice", NULL};
static const char *const device_kinds[] = {"none", "uniform", "lognormal", "file", NULL};
static const char *const availability_models[] = {"always", "periodic", "markov", "trace", NULL};
static const char *const staleness_kinds[] = {"polynomial", "hinge", "constant", NULL};
static const char *const capabilities[] = {"none", "uniform", "lognormal", NULL};
static const char *const models[] = {"mlp", "cnn", "cnn-bn", "resnet", "cnn-dp", NULL};
static const char *const norms[] = {"batch", "group", NULL};
static const char *const kernel_sets[] = {"fast", "reference", NULL};
static const char *const optimizers[] = {"sgd", "adam", "adagrad", NULL};
static const char *const sa_graphs[] = {"full", "harary", NULL};
static const char *const dp_modes[] = {"none", "dp-sgd", "dp-fedavg", "local", "distributed", "distributed-dp-sgd",
                                       NULL};
static const char *const noise_sources[] = {"seeded", "secure", NULL};
static const char *const conversions[] = {"improved", "classic", NULL};
static const char *const strategies[] = {"fedavg", "fedavgm", "fedprox", "scaffold", "qfedavg",
                                         "fedadam", "fedyogi", "fedadagrad", "fednova", "fedbuff", NULL};

/* Table order is struct order: it is the order of fed_config_to_yaml and of the docs. */
static const fed_config_key keys[] = {
    /* experiment */
    {"name", FED_CONFIG_STRING, FIELD(name), NO_RANGE, NULL, "free text shown in `runs list`"},
    {"seed", FED_CONFIG_U64, FIELD(seed), NO_RANGE, NULL, "run seed; every random stream derives from it"},
    {"threads", FED_CONFIG_INT, FIELD(threads), 0, 4096, NULL, "clients trained side by side (0 = all cores)"},
    /* data */
    {"dataset", FED_CONFIG_STRING, FIELD(dataset), NO_RANGE, datasets, "data set to train on"},
    {"data_root", FED_CONFIG_STRING, FIELD(data_root), NO_RANGE, NULL,
     "where data sets live (empty = $FEDERATE_DATA)"},
    {"data_dir", FED_CONFIG_STRING, FIELD(data_dir), NO_RANGE, NULL,
     "per-client folders written by `federate partition` (empty = partition in memory)"},
    {"data_distribution", FED_CONFIG_STRING, FIELD(data_distribution), NO_RANGE, distributions,
     "how training data is split across clients"},
    {"non_iid_alpha", FED_CONFIG_DOUBLE, FIELD(non_iid_alpha), 0, 1e6, NULL,
     "Dirichlet concentration for data_distribution dirichlet (smaller = more skewed)"},
    {"shards_per_client", FED_CONFIG_INT, FIELD(shards_per_client), 1, 100000, NULL,
     "label-sorted shards per client for data_distribution shards"},
    {"quantity_sigma", FED_CONFIG_DOUBLE, FIELD(quantity_sigma), 0, 10, NULL,
     "log-normal sigma of client data sizes for data_distribution quantity"},
    {"local_test_fraction", FED_CONFIG_DOUBLE, FIELD(local_test_fraction), 0, 0.9, NULL,
     "share of each client's data held out for local evaluation"},
    /* federation */
    {"num_clients", FED_CONFIG_INT, FIELD(num_clients), 1, BIG, NULL, "number of clients"},
    {"num_rounds", FED_CONFIG_INT, FIELD(num_rounds), 1, BIG, NULL, "number of federated rounds"},
    {"clients_per_round", FED_CONFIG_INT, FIELD(clients_per_round), 0, BIG, NULL,
     "clients selected each round (0 = use client_selection_ratio)"},
    {"client_selection_ratio", FED_CONFIG_DOUBLE, FIELD(client_selection_ratio), 0, 1, NULL,
     "fraction of clients selected each round when clients_per_round is 0"},
    {"min_clients", FED_CONFIG_INT, FIELD(min_clients), 1, BIG, NULL,
     "fewest finished clients needed to aggregate a round"},
    {"client_selection", FED_CONFIG_STRING, FIELD(client_selection), NO_RANGE, selections,
     "how clients are picked each round"},
    {"dropout_probability", FED_CONFIG_DOUBLE, FIELD(dropout_probability), 0, 0.99, NULL,
     "chance that a selected client drops out of a round"},
    /* client capability profiles */
    {"capability", FED_CONFIG_STRING, FIELD(capability), NO_RANGE, capabilities,
     "distribution of client speed factors"},
    {"capability_spread", FED_CONFIG_DOUBLE, FIELD(capability_spread), 0, 10, NULL,
     "range (uniform) or sigma (lognormal) of the speed factors"},
    {"adapt_to_capability", FED_CONFIG_BOOL, FIELD(adapt_to_capability), NO_RANGE, NULL,
     "scale each client's local work by its capability"},
    /* simulated systems */
    {"device_profiles", FED_CONFIG_STRING, FIELD(device_profiles), NO_RANGE, device_kinds,
     "simulated devices (speed, bandwidth, latency, availability) on a virtual clock"},
    {"device_profiles_file", FED_CONFIG_STRING, FIELD(device_profiles_file), NO_RANGE, NULL,
     "CSV of device profiles for device_profiles file"},
    {"device_spread", FED_CONFIG_DOUBLE, FIELD(device_spread), 0, 10, NULL,
     "lognormal sigma of device speeds and bandwidths"},
    {"availability", FED_CONFIG_DOUBLE, FIELD(availability), 0.01, 1, NULL,
     "fraction of each on/off cycle a device is online"},
    {"availability_period_s", FED_CONFIG_DOUBLE, FIELD(availability_period_s), 1, 1e9, NULL,
     "simulated seconds of one on/off availability cycle"},
    {"availability_model", FED_CONFIG_STRING, FIELD(availability_model), NO_RANGE, availability_models,
     "when devices are online: always, periodic cycles, a two-state Markov chain, or a trace file"},
    {"availability_trace", FED_CONFIG_STRING, FIELD(availability_trace), NO_RANGE, NULL,
     "CSV client,start_s,end_s of online intervals for availability_model trace"},
    {"availability_mean_on_s", FED_CONFIG_DOUBLE, FIELD(availability_mean_on_s), 0.001, 1e12, NULL,
     "markov: mean simulated seconds a device stays online"},
    {"availability_mean_off_s", FED_CONFIG_DOUBLE, FIELD(availability_mean_off_s), 0.001, 1e12, NULL,
     "markov: mean simulated seconds a device stays offline"},
    {"failure_probability", FED_CONFIG_DOUBLE, FIELD(failure_probability), 0, 0.99, NULL,
     "chance that a device fails during its work (profiles from a file may set their own)"},
    {"round_deadline_s", FED_CONFIG_DOUBLE, FIELD(round_deadline_s), 0, 1e12, NULL,
     "simulated seconds a round may take; stragglers send partial work (0 = none)"},
    {"over_selection", FED_CONFIG_DOUBLE, FIELD(over_selection), 0, 10, NULL,
     "select this fraction more clients and aggregate the first ones to finish"},
    {"oort_alpha", FED_CONFIG_DOUBLE, FIELD(oort_alpha), 0, 100, NULL,
     "oort: straggler penalty exponent"},
    {"oort_epsilon", FED_CONFIG_DOUBLE, FIELD(oort_epsilon), 0, 1, NULL,
     "oort: initial fraction of picks that explore unexplored clients"},
    {"poc_candidates", FED_CONFIG_INT, FIELD(poc_candidates), 0, BIG, NULL,
     "power-of-choice: candidates d sampled each round (0 = 2 x clients per round)"},
    {"buffer_size", FED_CONFIG_INT, FIELD(buffer_size), 1, BIG, NULL,
     "fedbuff: client updates per server step (K)"},
    {"concurrency", FED_CONFIG_INT, FIELD(concurrency), 0, BIG, NULL,
     "fedbuff: clients training at once (0 = 2 x buffer_size)"},
    {"staleness", FED_CONFIG_STRING, FIELD(staleness), NO_RANGE, staleness_kinds,
     "fedbuff: down-weighting of stale updates"},
    {"staleness_a", FED_CONFIG_DOUBLE, FIELD(staleness_a), 0, 100, NULL,
     "fedbuff: polynomial exponent a, or hinge slope a"},
    {"staleness_b", FED_CONFIG_DOUBLE, FIELD(staleness_b), 0, 1e9, NULL,
     "fedbuff: hinge staleness b below which updates keep full weight"},
    /* model and local training */
    {"model", FED_CONFIG_STRING, FIELD(model), NO_RANGE, models, "model architecture"},
    {"hidden", FED_CONFIG_STRING, FIELD(hidden), NO_RANGE, NULL,
     "mlp hidden layer sizes, 1 to 8 comma-separated, e.g. \"200,200\""},
    {"norm", FED_CONFIG_STRING, FIELD(norm), NO_RANGE, norms, "resnet normalization layers"},
    {"kernels", FED_CONFIG_STRING, FIELD(kernels), NO_RANGE, kernel_sets,
     "fast: 5x5 convolutions by Winograd F(2x2, 5x5) and plain SGD's linear layers stepped inside backward; "
     "reference: im2col + GEMM and a separate optimizer step (slower; rounds differently, so it reproduces runs "
     "made before the fast kernels bit for bit)"},
    {"local_epochs", FED_CONFIG_INT, FIELD(local_epochs), 1, 100000, NULL,
     "local epochs per round (E)"},
    {"local_steps", FED_CONFIG_INT, FIELD(local_steps), 0, BIG, NULL,
     "local optimizer steps per round instead of local_epochs (0 = use local_epochs; 1 = FedSGD)"},
    {"batch_size", FED_CONFIG_INT, FIELD(batch_size), 1, BIG, NULL, "local minibatch size (B)"},
    {"learning_rate", FED_CONFIG_DOUBLE, FIELD(learning_rate), 0, 1000, NULL,
     "client learning rate (must be > 0)"},
    {"optimizer", FED_CONFIG_STRING, FIELD(optimizer), NO_RANGE, optimizers, "client optimizer"},
    {"momentum", FED_CONFIG_DOUBLE, FIELD(momentum), 0, 1, NULL, "client SGD momentum"},
    {"weight_decay", FED_CONFIG_DOUBLE, FIELD(weight_decay), 0, 1, NULL, "client L2 weight decay"},
    {"lr_decay", FED_CONFIG_DOUBLE, FIELD(lr_decay), 0, 1, NULL,
     "client learning rate is multiplied by this every round (must be > 0)"},
    {"augment_crop", FED_CONFIG_INT, FIELD(augment_crop), 0, 16, NULL,
     "client data augmentation: each training example randomly cropped back to its size after padding it with "
     "black by this many pixels, i.e. shifted by up to this many pixels (0 = off)"},
    {"augment_flip", FED_CONFIG_BOOL, FIELD(augment_flip), NO_RANGE, NULL,
     "client data augmentation: random horizontal flips (for CIFAR, not digits)"},
    {"augment_rotate", FED_CONFIG_DOUBLE, FIELD(augment_rotate), 0, 180, NULL,
     "client data augmentation: random rotation by up to this many degrees, bilinear (0 = off)"},
    /* strategy */
    {"strategy", FED_CONFIG_STRING, FIELD(strategy), NO_RANGE, strategies,
     "federated algorithm run on the server"},
    {"server_lr", FED_CONFIG_DOUBLE, FIELD(server_lr), 0, 1000, NULL,
     "server learning rate applied to the aggregated update (must be > 0)"},
    {"server_momentum", FED_CONFIG_DOUBLE, FIELD(server_momentum), 0, 1, NULL,
     "server momentum for fedavgm"},
    {"beta1", FED_CONFIG_DOUBLE, FIELD(beta1), 0, 1, NULL,
     "first-moment decay for fedadam and fedyogi"},
    {"beta2", FED_CONFIG_DOUBLE, FIELD(beta2), 0, 1, NULL,
     "second-moment decay for fedadam and fedyogi"},
    {"tau", FED_CONFIG_DOUBLE, FIELD(tau), 0, 1000, NULL,
     "adaptivity (epsilon) for fedadam, fedyogi and fedadagrad (must be > 0 for them)"},
    {"proximal_mu", FED_CONFIG_DOUBLE, FIELD(proximal_mu), 0, 1e6, NULL,
     "proximal term weight mu for fedprox"},
    {"q", FED_CONFIG_DOUBLE, FIELD(q), 0, 1000, NULL, "fairness exponent q for qfedavg (0 = fedavg)"},
    {"lipschitz", FED_CONFIG_DOUBLE, FIELD(lipschitz), 0, 1e9, NULL,
     "Lipschitz constant L for qfedavg (0 = 1/learning_rate)"},
    /* update pipeline */
    {"clip_norm", FED_CONFIG_DOUBLE, FIELD(clip_norm), 0, 1e9, NULL,
     "clip each client update to this L2 norm (0 = off)"},
    {"compression", FED_CONFIG_STRING, FIELD(compression), NO_RANGE, NULL,
     "codec chain for client updates, e.g. topk:0.01,q8,zstd (empty = raw float32; see docs/config.md)"},
    {"compression_error_feedback", FED_CONFIG_BOOL, FIELD(compression_error_feedback), NO_RANGE, NULL,
     "each client keeps what compression left out and adds it to its next update"},
    {"download_compression", FED_CONFIG_STRING, FIELD(download_compression), NO_RANGE, NULL,
     "codec chain for the global model sent to clients, as a delta against each client's last copy (empty = raw float32)"},
    /* secure aggregation */
    {"secure_aggregation.enabled", FED_CONFIG_BOOL, FIELD(sa_enabled), NO_RANGE, NULL,
     "the server learns only the sum of the clients' updates (Bonawitz et al. 2017)"},
    {"secure_aggregation.graph", FED_CONFIG_STRING, FIELD(sa_graph), NO_RANGE, sa_graphs,
     "full (every pair of clients masks) or harary (SecAgg+: a sparse random graph, Bell et al. 2020)"},
    {"secure_aggregation.clipping_range", FED_CONFIG_DOUBLE, FIELD(sa_clip), 0, 1e9, NULL,
     "each update coordinate is clipped to [-c, c] before quantization"},
    {"secure_aggregation.bits", FED_CONFIG_INT, FIELD(sa_bits), 1, 52, NULL,
     "quantization bits per coordinate (stochastic rounding)"},
    {"secure_aggregation.adversarial_fraction", FED_CONFIG_DOUBLE, FIELD(sa_adversarial), 0, 0.5, NULL,
     "harary: fraction of clients that may collude with the server"},
    {"secure_aggregation.dropout_fraction", FED_CONFIG_DOUBLE, FIELD(sa_dropout), 0, 0.9, NULL,
     "harary: fraction of clients that may drop out during the protocol; privacy.mode distributed: the "
     "noise is sized for the rest"},
    {"secure_aggregation.stage_dropout", FED_CONFIG_DOUBLE, FIELD(sa_stage_dropout), 0, 0.9, NULL,
     "simulation: probability that a client drops out at each protocol stage"},
    {"secure_aggregation.consistency_check", FED_CONFIG_BOOL, FIELD(sa_consistency), NO_RANGE, NULL,
     "active-adversary variant: signed key advertisements and a consistency round before unmasking "
     "(over the network the clients need --peer-keys)"},
    /* differential privacy */
    {"privacy.mode", FED_CONFIG_STRING, FIELD(dp_mode), NO_RANGE, dp_modes,
     "none; dp-sgd (record level: DP-SGD on every client); dp-fedavg (user level: clipped updates, "
     "Gaussian noise on the server's sum, Poisson client sampling); local (each client noises its own update); "
     "distributed (with secure_aggregation: each client adds a discrete Gaussian share before masking); "
     "distributed-dp-sgd (record level with secure_aggregation: one DP-SGD step per client and round, the noise "
     "added as discrete Gaussian shares before masking)"},
    {"privacy.noise_multiplier", FED_CONFIG_DOUBLE, FIELD(dp_noise_multiplier), 0, 1e6, NULL,
     "noise standard deviation over the clip norm (z)"},
    {"privacy.clip_norm", FED_CONFIG_DOUBLE, FIELD(dp_clip), 0, 1e9, NULL,
     "L2 clip: per example for dp-sgd and distributed-dp-sgd (0 = 1.0), per client update for dp-fedavg, local and distributed "
     "(0 = 0.1; the initial clip when adaptive)"},
    {"privacy.adaptive_clipping", FED_CONFIG_BOOL, FIELD(dp_adaptive), NO_RANGE, NULL,
     "dp-fedavg: adapt the clip to a quantile of update norms (Andrew et al. 2021)"},
    {"privacy.target_quantile", FED_CONFIG_DOUBLE, FIELD(dp_target_quantile), 0, 1, NULL,
     "adaptive clipping: the fraction of updates left unclipped (gamma)"},
    {"privacy.clip_learning_rate", FED_CONFIG_DOUBLE, FIELD(dp_clip_lr), 0, 100, NULL,
     "adaptive clipping: geometric step size of the clip (eta)"},
    {"privacy.clipped_count_stddev", FED_CONFIG_DOUBLE, FIELD(dp_count_stddev), 0, 1e9, NULL,
     "adaptive clipping: noise on the count of unclipped updates (sigma_b; 0 = clients per round / 20)"},
    {"privacy.target_epsilon", FED_CONFIG_DOUBLE, FIELD(dp_target_epsilon), 0, 1e9, NULL,
     "privacy budget: stop before a round that would exceed this epsilon (0 = no budget)"},
    {"privacy.delta", FED_CONFIG_DOUBLE, FIELD(dp_delta), 0, 1, NULL,
     "delta of the reported (epsilon, delta) guarantee"},
    {"privacy.noise_source", FED_CONFIG_STRING, FIELD(dp_noise_source), NO_RANGE, noise_sources,
     "seeded (reproducible simulation) or secure (libsodium CSPRNG, for deployments)"},
    {"privacy.conversion", FED_CONFIG_STRING, FIELD(dp_conversion), NO_RANGE, conversions,
     "RDP to (epsilon, delta): improved (Canonne et al. 2020) or classic (Mironov 2017)"},
    /* evaluation and output */
    {"evaluation_every", FED_CONFIG_INT, FIELD(evaluation_every), 1, BIG, NULL,
     "rounds between evaluations of the global model"},
    {"target_accuracy", FED_CONFIG_DOUBLE, FIELD(target_accuracy), 0, 100, NULL,
     "stop once the global test accuracy (percent) reaches this, e.g. to count rounds to 97%; 0 = run all rounds"},
    {"eval_batch_size", FED_CONFIG_INT, FIELD(eval_batch_size), 1, BIG, NULL,
     "batch size for evaluation"},
    {"checkpoint_every", FED_CONFIG_INT, FIELD(checkpoint_every), 1, BIG, NULL,
     "rounds between checkpoints in the store"},
    {"state_dir", FED_CONFIG_STRING, FIELD(state_dir), NO_RANGE, NULL,
     "where large per-client state spills (empty = next to the store)"},
};
#define NKEYS (sizeof keys / sizeof keys[0])

const fed_config_key *fed_config_keys(size_t *count) {
    if (count) *count = NKEYS;
    return keys;
}

const fed_config_key *fed_config_find_key(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].name, name) == 0) return &keys[i];
    return NULL;
}

void fed_config_default(fed_config *c) {
    /* Zeroed first so padding and unused string bytes are deterministic: two
     * configs with equal values then compare equal with memcmp. */
    memset(c, 0, sizeof *c);
    snprintf(c->dataset, sizeof c->dataset, "mnist");
    snprintf(c->data_distribution, sizeof c->data_distribution, "iid");
    c->non_iid_alpha = 0.5;
    c->shards_per_client = 2;
    c->quantity_sigma = 1.0;
    c->local_test_fraction = 0.1;
    c->num_clients = 100;
    c->num_rounds = 20;
    c->clients_per_round = 0;
    c->client_selection_ratio = 0.1;
    c->min_clients = 1;
    snprintf(c->client_selection, sizeof c->client_selection, "uniform");
    snprintf(c->capability, sizeof c->capability, "none");
    c->capability_spread = 0.5;
    snprintf(c->device_profiles, sizeof c->device_profiles, "none");
    c->device_spread = 1.0;
    c->availability = 1.0;
    c->availability_period_s = 3600;
    snprintf(c->availability_model, sizeof c->availability_model, "periodic");
    c->availability_mean_on_s = 3600;
    c->availability_mean_off_s = 1800;
    c->oort_alpha = 2.0;
    c->oort_epsilon = 0.9;
    c->buffer_size = 10;
    snprintf(c->staleness, sizeof c->staleness, "polynomial");
    c->staleness_a = 0.5;
    c->staleness_b = 4;
    snprintf(c->model, sizeof c->model, "cnn");
    snprintf(c->hidden, sizeof c->hidden, "200,200");
    snprintf(c->norm, sizeof c->norm, "batch");
    snprintf(c->kernels, sizeof c->kernels, "fast");
    c->local_epochs = 5;
    c->batch_size = 10;
    c->learning_rate = 0.1;
    snprintf(c->optimizer, sizeof c->optimizer, "sgd");
    c->lr_decay = 1.0;
    snprintf(c->strategy, sizeof c->strategy, "fedavg");
    c->server_lr = 1.0;
    c->server_momentum = 0.9;
    c->beta1 = 0.9;
    c->beta2 = 0.99;
    c->tau = 1e-3;
    c->proximal_mu = 0.01;
    c->q = 1.0;
    c->evaluation_every = 1;
    c->eval_batch_size = 250;
    c->checkpoint_every = 1;
    c->compression_error_feedback = 1;
    snprintf(c->sa_graph, sizeof c->sa_graph, "full");
    c->sa_clip = 1.0;
    c->sa_bits = 16;
    c->sa_adversarial = 0.05;
    c->sa_dropout = 0.3;
    snprintf(c->dp_mode, sizeof c->dp_mode, "none");
    c->dp_noise_multiplier = 1.0;
    c->dp_target_quantile = 0.5;
    c->dp_clip_lr = 0.2;
    c->dp_delta = 1e-5;
    snprintf(c->dp_noise_source, sizeof c->dp_noise_source, "seeded");
    snprintf(c->dp_conversion, sizeof c->dp_conversion, "improved");
}

/* ---- message helpers ---------------------------------------------------- */

/* Values and unknown keys come from user files (possibly megabytes of garbage):
 * messages quote at most 60 bytes of them, with control bytes made visible. */
static const char *excerpt(char *buf, size_t n, const char *s, size_t len) {
    size_t lim = n - 4, o = 0;
    for (; o < len && o < lim; o++) {
        unsigned char ch = (unsigned char)s[o];
        buf[o] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    if (o < len) memcpy(buf + o, "...", 3), o += 3;
    buf[o] = '\0';
    return buf;
}
#define EXCERPT_SIZE 64

/* "path: key 'x' (line 3)" / "key 'x'" — the prefix of every per-key message. */
static void where(char *buf, size_t n, const char *src, const char *key, int line) {
    int o = 0;
    if (src) o = snprintf(buf, n, "%s: ", src);
    if (o < 0 || (size_t)o >= n) o = 0;
    if (line > 0) snprintf(buf + o, n - (size_t)o, "key '%s' (line %d)", key, line);
    else snprintf(buf + o, n - (size_t)o, "key '%s'", key);
}

/* Numbers as short as round-trips exactly (0.1, not 0.10000000000000001). An
 * exponent form gets a ".0" so YAML 1.1 readers (PyYAML) see a float, not a string. */
static void fmt_double(char *buf, size_t n, double x) {
    if (x == floor(x) && fabs(x) < 1e15) {
        snprintf(buf, n, "%.0f", x);
        return;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, x);
        if (strtod(buf, NULL) == x) break;
    }
    char *e = strchr(buf, 'e');
    if (e && !memchr(buf, '.', (size_t)(e - buf)) && strlen(buf) + 3 <= n) {
        memmove(e + 2, e, strlen(e) + 1);
        e[0] = '.', e[1] = '0';
    }
}

static unsigned char lower(unsigned char ch) { return (unsigned char)tolower(ch); }

/* Optimal-string-alignment distance (edits plus adjacent swaps), case-folded;
 * inputs are short (keys, choices), callers cap the length. */
static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 1000;
    int d[65][65];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int cost = lower((unsigned char)a[i - 1]) != lower((unsigned char)b[j - 1]);
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && lower((unsigned char)a[i - 1]) == lower((unsigned char)b[j - 2]) &&
                lower((unsigned char)a[i - 2]) == lower((unsigned char)b[j - 1]) && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[la][lb];
}

/* Closest candidate within max_dist, and within a third of the candidate's length:
 * three edits turn "foo" into "norm", which is a coincidence, not a typo. */
static const char *closest(const char *word, const char *const *cands, size_t ncand, size_t stride,
                           int max_dist) {
    const char *best = NULL;
    int bestd = max_dist + 1;
    if (strlen(word) > 64) return NULL;
    for (size_t i = 0; i < ncand; i++) {
        const char *cand = *(const char *const *)((const char *)cands + i * stride);
        int dd = edit_distance(word, cand);
        size_t allow = strlen(cand) / 3 > 1 ? strlen(cand) / 3 : 1;
        if (dd < bestd && (size_t)dd <= allow) bestd = dd, best = cand;
    }
    return best;
}

/* Whether some key is named "name.something": name is then a section. */
static int is_section(const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i < NKEYS; i++)
        if (strncmp(keys[i].name, name, n) == 0 && keys[i].name[n] == '.') return 1;
    return 0;
}

static int unknown_key(const char *src, const char *key, size_t len, int line) {
    char ex[EXCERPT_SIZE], pre[600] = "";
    excerpt(ex, sizeof ex, key, len);
    if (src) snprintf(pre, sizeof pre, "%s: ", src);
    /* key need not be NUL-terminated at len (it may point into "key=value"). */
    char word[65];
    const char *sug = NULL;
    if (len < sizeof word && !memchr(key, '\0', len)) {
        memcpy(word, key, len);
        word[len] = '\0';
        sug = closest(word, &keys[0].name, NKEYS, sizeof keys[0], 3);
    }
    char at[32] = "";
    if (line > 0) snprintf(at, sizeof at, " (line %d)", line);
    if (sug) return fed_error(FED_EINVAL, "%sunknown key '%s'%s; did you mean '%s'?", pre, ex, at, sug);
    return fed_error(FED_EINVAL, "%sunknown key '%s'%s (see docs/config.md for the keys)", pre, ex, at);
}

/* ---- value parsing ------------------------------------------------------ */

static int valid_utf8(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) n = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef) n = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4) n = 3, cp = c & 0x07;
        else return 0;
        if (i + n >= len) return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}

/* Checks the hidden-size list and, when sizes is non-NULL, fills it. Returns the
 * count (1..8) or -1. */
static int parse_hidden(const char *s, int *sizes) {
    int n = 0;
    const char *p = s;
    for (;;) {
        while (*p == ' ') p++;
        if (!isdigit((unsigned char)*p)) return -1;
        errno = 0;
        char *end;
        long v = strtol(p, &end, 10);
        if (errno || v < 1 || v > 1000000 || n == 8) return -1;
        if (sizes) sizes[n] = (int)v;
        n++;
        p = end;
        while (*p == ' ') p++;
        if (*p == '\0') return n;
        if (*p != ',') return -1;
        p++;
    }
}

static const char *type_word(int type) {
    switch (type) {
    case FED_CONFIG_INT: return "an integer";
    case FED_CONFIG_U64: return "a non-negative integer";
    case FED_CONFIG_DOUBLE: return "a finite number";
    case FED_CONFIG_BOOL: return "a boolean (true/false, yes/no, on/off, 1/0)";
    default: return "a string";
    }
}

static int range_error(const char *pre, const fed_config_key *k, const char *ex) {
    char lo[40], hi[40];
    fmt_double(lo, sizeof lo, k->min);
    fmt_double(hi, sizeof hi, k->max);
    return fed_error(FED_EINVAL, "%s: %s is out of range [%s, %s]", pre, ex, lo, hi);
}

/* Parses text (len bytes, NUL-terminated at len) into k's field of c.
 * is_null: a YAML null (empty, ~, null), which for strings means "". */
static int apply(fed_config *c, const fed_config_key *k, const char *text, size_t len, int is_null,
                 const char *src, int line) {
    char pre[700], ex[EXCERPT_SIZE];
    where(pre, sizeof pre, src, k->name, line);
    excerpt(ex, sizeof ex, text, len);
    char *field = (char *)c + k->offset;
    int has_nul = strlen(text) != len;
    /* Numbers: no leading blanks and the whole text consumed (strto* skip and stop silently). */
    int num_ok = !has_nul && len > 0 && !isspace((unsigned char)text[0]);

    switch (k->type) {
    case FED_CONFIG_INT: {
        char *end = NULL;
        errno = 0;
        long long v = num_ok ? strtoll(text, &end, 10) : 0;
        if (!num_ok || *end != '\0' || end == text)
            return fed_error(FED_EINVAL, "%s: '%s' is not an integer", pre, ex);
        if (errno == ERANGE || v < INT_MIN || v > INT_MAX || (k->min <= k->max && (v < k->min || v > k->max))) {
            if (k->min <= k->max) return range_error(pre, k, ex);
            return fed_error(FED_EINVAL, "%s: %s does not fit in an int", pre, ex);
        }
        int iv = (int)v;
        memcpy(field, &iv, sizeof iv);
        return 0;
    }
    case FED_CONFIG_U64: {
        char *end = NULL;
        errno = 0;
        /* strtoull accepts "-1" and wraps it: signs are refused up front. */
        int ok = num_ok && isdigit((unsigned char)text[0]);
        unsigned long long v = ok ? strtoull(text, &end, 10) : 0;
        if (!ok || *end != '\0')
            return fed_error(FED_EINVAL, "%s: '%s' is not a non-negative integer", pre, ex);
        if (errno == ERANGE)
            return fed_error(FED_EINVAL, "%s: %s is out of range [0, 18446744073709551615]", pre, ex);
        uint64_t u = (uint64_t)v;
        memcpy(field, &u, sizeof u);
        return 0;
    }
    case FED_CONFIG_DOUBLE: {
        char *end = NULL;
        errno = 0;
        double v = num_ok ? strtod(text, &end) : 0;
        if (!num_ok || *end != '\0' || end == text)
            return fed_error(FED_EINVAL, "%s: '%s' is not a number", pre, ex);
        if (!isfinite(v))
            return fed_error(FED_EINVAL, "%s: '%s' is not a finite number", pre, ex);
        if (k->min <= k->max && !(v >= k->min && v <= k->max)) return range_error(pre, k, ex);
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case FED_CONFIG_BOOL: {
        static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
        int v = -1;
        for (int i = 0; i < 4 && !has_nul; i++) {
            if (strcasecmp(text, yes[i]) == 0) v = 1;
            if (strcasecmp(text, no[i]) == 0) v = 0;
        }
        if (v < 0) return fed_error(FED_EINVAL, "%s: '%s' is not %s", pre, ex, type_word(k->type));
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case FED_CONFIG_STRING: {
        if (is_null) text = "", len = 0;
        if (has_nul) return fed_error(FED_EINVAL, "%s: value contains a NUL byte", pre);
        if (len >= k->size)
            return fed_error(FED_EINVAL, "%s: value is %zu bytes long; at most %zu are allowed", pre, len,
                             k->size - 1);
        if (!valid_utf8((const unsigned char *)text, len))
            return fed_error(FED_EINVAL, "%s: value is not valid UTF-8", pre);
        if (k->choices) {
            int found = 0;
            for (const char *const *ch = k->choices; *ch; ch++) found |= strcmp(*ch, text) == 0;
            if (!found) {
                char list[256] = "";
                size_t o = 0, nch = 0;
                for (const char *const *ch = k->choices; *ch; ch++, nch++) {
                    int w = snprintf(list + o, sizeof list - o, "%s%s", o ? ", " : "", *ch);
                    if (w > 0 && (size_t)w < sizeof list - o) o += (size_t)w;
                }
                const char *sug = closest(text, k->choices, nch, sizeof(char *), 2);
                if (sug)
                    return fed_error(FED_EINVAL, "%s: '%s' is not one of %s; did you mean '%s'?", pre, ex, list,
                                     sug);
                return fed_error(FED_EINVAL, "%s: '%s' is not one of %s", pre, ex, list);
            }
        }
        if (k->offset == offsetof(fed_config, hidden) && parse_hidden(text, NULL) < 0)
            return fed_error(FED_EINVAL, "%s: '%s' is not 1 to 8 comma-separated sizes in [1, 1000000], e.g. 200,200",
                             pre, ex);
        memset(field, 0, k->size);
        memcpy(field, text, len);
        return 0;
    }
    default:
        return fed_error(FED_EINTERNAL, "%s: bad key type %d", pre, k->type);
    }
}

int fed_config_set(fed_config *c, const char *key, const char *value) {
    if (!c || !key || !value) return fed_error(FED_EINVAL, "fed_config_set: NULL argument");
    const fed_config_key *k = fed_config_find_key(key);
    if (!k) return unknown_key(NULL, key, strlen(key), 0);
    /* Command-line text is taken literally: "--set name=null" names the run "null". */
    return apply(c, k, value, strlen(value), 0, NULL, 0);
}

int fed_config_set_assignment(fed_config *c, const char *assignment) {
    if (!c || !assignment) return fed_error(FED_EINVAL, "fed_config_set_assignment: NULL argument");
    const char *eq = strchr(assignment, '=');
    char ex[EXCERPT_SIZE];
    if (!eq || eq == assignment)
        return fed_error(FED_EINVAL, "expected key=value, got '%s'",
                         excerpt(ex, sizeof ex, assignment, strlen(assignment)));
    /* Blanks around the key are forgiven ("num_rounds = 5" after shell quoting). */
    const char *b = assignment, *e = eq;
    while (b < e && isspace((unsigned char)*b)) b++;
    while (e > b && isspace((unsigned char)e[-1])) e--;
    char key[128];
    if ((size_t)(e - b) >= sizeof key || e == b) return unknown_key(NULL, b, (size_t)(e - b), 0);
    memcpy(key, b, (size_t)(e - b));
    key[e - b] = '\0';
    const char *v = eq + 1;
    while (*v == ' ' || *v == '\t') v++;
    return fed_config_set(c, key, v);
}

/* ---- YAML loading ------------------------------------------------------- */

static int yaml_failure(yaml_parser_t *p, const char *src) {
    char pre[600] = "";
    if (src) snprintf(pre, sizeof pre, "%s: ", src);
    const char *problem = p->problem ? p->problem : "unknown problem";
    switch (p->error) {
    case YAML_MEMORY_ERROR: return fed_error(FED_ENOMEM, "%sout of memory while parsing YAML", pre);
    case YAML_READER_ERROR:
        return fed_error(FED_EFORMAT, "%sYAML error at byte %zu: %s", pre, p->problem_offset, problem);
    default:
        if (p->context)
            return fed_error(FED_EFORMAT, "%sYAML syntax error at line %zu, column %zu: %s %s (line %zu, column %zu)",
                             pre, p->problem_mark.line + 1, p->problem_mark.column + 1, problem, p->context,
                             p->context_mark.line + 1, p->context_mark.column + 1);
        return fed_error(FED_EFORMAT, "%sYAML syntax error at line %zu, column %zu: %s", pre,
                         p->problem_mark.line + 1, p->problem_mark.column + 1, problem);
    }
}

static int is_yaml_null(const yaml_event_t *ev) {
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *v = (const char *)ev->data.scalar.value;
    return ev->data.scalar.length == 0 || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
           !strcmp(v, "NULL");
}

static const char *event_word(yaml_event_type_t t) {
    switch (t) {
    case YAML_SEQUENCE_START_EVENT: return "a list";
    case YAML_MAPPING_START_EVENT: return "a mapping";
    case YAML_ALIAS_EVENT: return "an alias";
    default: return "a scalar";
    }
}

/* Walks the event stream: STREAM_START, then nothing (empty file) or one document
 * holding a null or a mapping of scalar keys to scalar values. Events, not the
 * document API, so that garbage fails at its first wrong event without building
 * a tree, and every key keeps its line for messages. */
static int parse(fed_config *c, yaml_parser_t *p, const char *src) {
    yaml_event_t ev;
    int rc = 0, stage = 0;
    int seen[NKEYS] = {0}; /* line where each key was set; 0 = not yet */
    const fed_config_key *pending = NULL; /* key whose value comes next */
    char section[64] = "";  /* inside `section: {...}` (one level deep) */
    int in_section = 0, want_section = 0;
    int pending_line = 0;
    char pre[600] = "";
    if (src) snprintf(pre, sizeof pre, "%s: ", src);

    /* stage: 0 before document, 1 document start seen, 2 in mapping, 3 after
     * the document's content, 4 after document end. */
    for (;;) {
        if (!yaml_parser_parse(p, &ev)) return yaml_failure(p, src);
        int line = (int)ev.start_mark.line + 1;
        yaml_event_type_t t = ev.type;
        if (t == YAML_STREAM_START_EVENT) {
        } else if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        } else if (t == YAML_DOCUMENT_START_EVENT) {
            if (stage != 0) {
                rc = fed_error(FED_EFORMAT, "%sline %d: a configuration is one YAML document, found a second", pre,
                               line);
                break;
            }
            stage = 1;
        } else if (t == YAML_DOCUMENT_END_EVENT) {
            stage = 4;
        } else if (stage == 1) {
            if (t == YAML_MAPPING_START_EVENT) stage = 2;
            else if (t == YAML_SCALAR_EVENT && is_yaml_null(&ev)) stage = 3; /* "---" alone: all defaults */
            else {
                rc = fed_error(FED_EFORMAT, "%sline %d: the configuration must be a mapping of key: value, found %s",
                               pre, line, event_word(t));
                break;
            }
        } else if (stage == 2 && want_section) {
            /* a section's keys (privacy: {mode: ...}) are the dotted keys privacy.mode, ... */
            if (t != YAML_MAPPING_START_EVENT) {
                rc = fed_error(FED_EINVAL, "%sline %d: '%s' is a section: expected a mapping of its keys "
                               "(%s.KEY: value), found %s", pre, line, section, section, event_word(t));
                break;
            }
            want_section = 0;
            in_section = 1;
        } else if (stage == 2 && !pending) {
            if (t == YAML_MAPPING_END_EVENT) {
                if (in_section) in_section = 0;
                else stage = 3;
            } else if (t != YAML_SCALAR_EVENT) {
                rc = fed_error(FED_EINVAL, "%sline %d: a key must be a name, found %s", pre, line, event_word(t));
                break;
            } else {
                char full[160];
                const char *name = (const char *)ev.data.scalar.value;
                size_t len = ev.data.scalar.length;
                if (in_section && strlen(name) == len && len < 100) {
                    snprintf(full, sizeof full, "%s.%s", section, name);
                    name = full;
                    len = strlen(full);
                }
                const fed_config_key *k = strlen(name) == len ? fed_config_find_key(name) : NULL;
                if (!k && !in_section && strlen(name) == len && len < sizeof section && is_section(name)) {
                    memcpy(section, name, len + 1);
                    want_section = 1;
                    yaml_event_delete(&ev);
                    continue;
                }
                if (!k) {
                    rc = unknown_key(src, name, len, line);
                    break;
                }
                size_t idx = (size_t)(k - keys);
                if (seen[idx]) {
                    rc = fed_error(FED_EINVAL, "%skey '%s' appears twice (lines %d and %d)", pre, k->name, seen[idx],
                                   line);
                    break;
                }
                seen[idx] = line;
                pending = k, pending_line = line;
            }
        } else if (stage == 2) {
            if (t != YAML_SCALAR_EVENT) {
                char w[700];
                where(w, sizeof w, src, pending->name, pending_line);
                rc = fed_error(FED_EINVAL, "%s: expected a single value, found %s", w, event_word(t));
                break;
            }
            rc = apply(c, pending, (const char *)ev.data.scalar.value, ev.data.scalar.length, is_yaml_null(&ev), src,
                       pending_line);
            if (rc) break;
            pending = NULL;
        } else {
            /* The parser guarantees one node per document; anything else is ours to reject. */
            rc = fed_error(FED_EFORMAT, "%sline %d: unexpected %s", pre, line, event_word(t));
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_event_delete(&ev);
    return rc;
}

static int load_buffer(fed_config *c, const char *yaml, size_t len, const char *src) {
    if (!c || (!yaml && len)) return fed_error(FED_EINVAL, "fed_config_load_string: NULL argument");
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return fed_error(FED_ENOMEM, "out of memory initializing the YAML parser");
    yaml_parser_set_input_string(&p, (const unsigned char *)(yaml ? yaml : ""), len);
    /* Parse into a copy so a file that fails halfway leaves *c untouched. memcpy,
     * not assignment, so padding bytes come along and memcmp stays meaningful. */
    fed_config work;
    memcpy(&work, c, sizeof work);
    int rc = parse(&work, &p, src);
    yaml_parser_delete(&p);
    if (rc == 0) memcpy(c, &work, sizeof work);
    return rc;
}

int fed_config_load_string(fed_config *c, const char *yaml, size_t len) { return load_buffer(c, yaml, len, NULL); }

/* Config files are small; anything this big is a wrong path, not a config. */
#define FED_CONFIG_MAX_FILE ((size_t)64 << 20)

int fed_config_load(fed_config *c, const char *path) {
    if (!c || !path) return fed_error(FED_EINVAL, "fed_config_load: NULL argument");
    FILE *f = fopen(path, "rb");
    if (!f) return fed_error(FED_EIO, "cannot open config '%s': %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    int rc = 0;
    if (!buf) rc = fed_error(FED_ENOMEM, "out of memory reading '%s'", path);
    while (rc == 0) {
        if (len == cap) {
            if (cap >= FED_CONFIG_MAX_FILE) {
                rc = fed_error(FED_EIO, "config '%s' is larger than %zu MiB", path, FED_CONFIG_MAX_FILE >> 20);
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = fed_error(FED_ENOMEM, "out of memory reading '%s'", path);
                break;
            }
            buf = nb, cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) rc = fed_error(FED_EIO, "cannot read config '%s': %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (rc == 0) rc = load_buffer(c, buf, len, path);
    free(buf);
    return rc;
}

/* ---- cross-key checks --------------------------------------------------- */

int fed_config_clients_per_round(const fed_config *c) {
    if (c->clients_per_round > 0) return c->clients_per_round;
    double n = round(c->client_selection_ratio * (double)c->num_clients);
    if (!(n >= 1)) return 1; /* also catches NaN from a hand-filled struct */
    return n > INT_MAX ? INT_MAX : (int)n;
}

int fed_config_hidden(const fed_config *c, int sizes[8]) {
    size_t n = strnlen(c->hidden, sizeof c->hidden);
    char ex[EXCERPT_SIZE];
    if (n == sizeof c->hidden || parse_hidden(c->hidden, NULL) < 0)
        return fed_error(FED_EINVAL, "key 'hidden': '%s' is not 1 to 8 comma-separated sizes in [1, 1000000], e.g. 200,200",
                         excerpt(ex, sizeof ex, c->hidden, n));
    return parse_hidden(c->hidden, sizes);
}

static int is_one_of(const char *s, const char *a, const char *b, const char *cc) {
    return !strcmp(s, a) || !strcmp(s, b) || (cc && !strcmp(s, cc));
}

int fed_config_validate(const fed_config *c) {
    if (!c) return fed_error(FED_EINVAL, "fed_config_validate: NULL config");
    /* Per-key checks first: the struct is public and may have been filled by hand,
     * so re-run every value through the same parser --set uses. */
    fed_config scratch;
    memcpy(&scratch, c, sizeof scratch);
    for (size_t i = 0; i < NKEYS; i++) {
        const fed_config_key *k = &keys[i];
        const char *field = (const char *)c + k->offset;
        char text[520];
        if (k->type == FED_CONFIG_STRING) {
            size_t n = strnlen(field, k->size);
            if (n == k->size) return fed_error(FED_EINVAL, "key '%s': value is not NUL-terminated", k->name);
            memcpy(text, field, n + 1);
        } else if (k->type == FED_CONFIG_INT || k->type == FED_CONFIG_BOOL) {
            int v;
            memcpy(&v, field, sizeof v);
            if (k->type == FED_CONFIG_BOOL && v != 0 && v != 1)
                return fed_error(FED_EINVAL, "key '%s': %d is not a boolean (0 or 1)", k->name, v);
            snprintf(text, sizeof text, "%d", v);
        } else if (k->type == FED_CONFIG_DOUBLE) {
            double v;
            memcpy(&v, field, sizeof v);
            if (!isfinite(v)) return fed_error(FED_EINVAL, "key '%s': value is not a finite number", k->name);
            fmt_double(text, sizeof text, v);
        } else {
            continue;
        }
        int rc = apply(&scratch, k, text, strlen(text), 0, NULL, 0);
        if (rc) return rc;
    }

    int cpr = fed_config_clients_per_round(c);
    if (c->num_clients < 1) return fed_error(FED_EINVAL, "num_clients (%d) must be at least 1", c->num_clients);
    if (c->clients_per_round > c->num_clients)
        return fed_error(FED_EINVAL, "clients_per_round (%d) exceeds num_clients (%d)", c->clients_per_round,
                         c->num_clients);
    if (c->min_clients > cpr) {
        if (c->clients_per_round > 0)
            return fed_error(FED_EINVAL, "min_clients (%d) exceeds clients_per_round (%d)", c->min_clients, cpr);
        char r[40];
        fmt_double(r, sizeof r, c->client_selection_ratio);
        return fed_error(FED_EINVAL,
                         "min_clients (%d) exceeds the %d clients per round from client_selection_ratio %s "
                         "x num_clients %d",
                         c->min_clients, cpr, r, c->num_clients);
    }
    if (!strcmp(c->data_distribution, "dirichlet") && !(c->non_iid_alpha > 0))
        return fed_error(FED_EINVAL, "data_distribution dirichlet needs non_iid_alpha > 0 (got %g)", c->non_iid_alpha);
    if (!strcmp(c->data_distribution, "quantity") && !(c->quantity_sigma > 0))
        return fed_error(FED_EINVAL, "data_distribution quantity needs quantity_sigma > 0 (got %g)",
                         c->quantity_sigma);
    if (!(c->learning_rate > 0))
        return fed_error(FED_EINVAL, "learning_rate must be > 0 (got %g)", c->learning_rate);
    if (!(c->lr_decay > 0)) return fed_error(FED_EINVAL, "lr_decay must be > 0 (got %g)", c->lr_decay);
    if (!(c->server_lr > 0)) return fed_error(FED_EINVAL, "server_lr must be > 0 (got %g)", c->server_lr);
    if (is_one_of(c->strategy, "fedadam", "fedyogi", "fedadagrad") && !(c->tau > 0))
        return fed_error(FED_EINVAL, "strategy %s needs tau > 0 (got %g)", c->strategy, c->tau);
    if (is_one_of(c->strategy, "fedadam", "fedyogi", NULL) && !(c->beta2 < 1))
        return fed_error(FED_EINVAL, "strategy %s needs beta2 < 1 (got %g)", c->strategy, c->beta2);
    if (!strcmp(c->strategy, "fedavgm") && !(c->server_momentum < 1))
        return fed_error(FED_EINVAL, "strategy fedavgm needs server_momentum < 1 (got %g)", c->server_momentum);
    if (!strcmp(c->optimizer, "sgd") && !(c->momentum < 1))
        return fed_error(FED_EINVAL, "optimizer sgd needs momentum < 1 (got %g)", c->momentum);
    if (!strcmp(c->client_selection, "capability") && !strcmp(c->capability, "none"))
        return fed_error(FED_EINVAL, "client_selection capability needs a capability distribution "
                                     "(capability uniform or lognormal, not none)");
    if (c->download_compression[0]) {
        fed_codec *codec = NULL;
        int rc = fed_codec_new(&codec, c->download_compression);
        fed_codec_free(codec);
        if (rc) return fed_error(rc, "key 'download_compression': %s", fed_last_error());
    }
    if (c->compression[0]) {
        fed_codec *codec = NULL;
        int rc = fed_codec_new(&codec, c->compression);
        fed_codec_free(codec);
        if (rc) return fed_error(rc, "key 'compression': %s", fed_last_error());
        if (c->compression_error_feedback && strstr(c->compression, "randk"))
            return fed_error(FED_EINVAL, "compression '%s': random-k is unbiased but not contractive, so error "
                                         "feedback can diverge; set compression_error_feedback: false",
                             c->compression);
    }
    if (c->sa_enabled) {
        if (!fed_strategy_mean_only(c->strategy))
            return fed_error(FED_EINVAL, "secure_aggregation works with strategies that need only the weighted mean "
                                         "of the updates (fedavg, fedavgm, fedprox, fedadam, fedyogi, fedadagrad), "
                                         "not %s", c->strategy);
        if (!strcmp(c->dp_mode, "dp-fedavg"))
            return fed_error(FED_EINVAL, "secure_aggregation with privacy.mode dp-fedavg: the server would add its "
                                         "noise to a sum it never sees; use privacy.mode distributed (the clients add "
                                         "discrete Gaussian shares before masking), or dp-fedavg without "
                                         "secure_aggregation");
        if (!(c->sa_clip > 0))
            return fed_error(FED_EINVAL, "secure_aggregation.clipping_range must be > 0 (got %g)", c->sa_clip);
    } else if (!strcmp(c->dp_mode, "distributed")) {
        return fed_error(FED_EINVAL, "privacy.mode distributed adds the noise inside secure aggregation; set "
                                     "secure_aggregation.enabled: true (or use privacy.mode dp-fedavg)");
    } else if (!strcmp(c->dp_mode, "distributed-dp-sgd")) {
        return fed_error(FED_EINVAL, "privacy.mode distributed-dp-sgd adds the noise inside secure aggregation; set "
                                     "secure_aggregation.enabled: true (or use privacy.mode dp-sgd)");
    } else if (c->sa_consistency) {
        return fed_error(FED_EINVAL, "secure_aggregation.consistency_check is a variant of secure aggregation; set "
                                     "secure_aggregation.enabled: true");
    }
    if (c->adapt_to_capability && !strcmp(c->capability, "none"))
        return fed_error(FED_EINVAL, "adapt_to_capability needs a capability distribution "
                                     "(capability uniform or lognormal, not none)");
    if (!strcmp(c->device_profiles, "file") && !c->device_profiles_file[0])
        return fed_error(FED_EINVAL, "device_profiles file needs device_profiles_file (a CSV path)");
    if (!strcmp(c->device_profiles, "none") && (c->round_deadline_s > 0 || c->over_selection > 0 ||
                                                !strcmp(c->client_selection, "speed")))
        return fed_error(FED_EINVAL, "round_deadline_s, over_selection and client_selection speed need simulated "
                                     "devices (device_profiles uniform, lognormal or file, not none)");
    if (!strcmp(c->availability_model, "trace") && !c->availability_trace[0])
        return fed_error(FED_EINVAL, "availability_model trace needs availability_trace (a CSV path)");
    if (c->availability_trace[0] && strcmp(c->availability_model, "trace"))
        return fed_error(FED_EINVAL, "availability_trace is set but availability_model is %s; set "
                                     "availability_model: trace (or clear availability_trace)", c->availability_model);
    if (!strcmp(c->device_profiles, "none") && (!strcmp(c->availability_model, "markov") ||
                                                !strcmp(c->availability_model, "trace")))
        return fed_error(FED_EINVAL, "availability_model %s needs simulated devices (device_profiles uniform, "
                                     "lognormal or file, not none)", c->availability_model);
    if (!strcmp(c->strategy, "fedbuff")) {
        if (strcmp(c->dp_mode, "none") || c->sa_enabled)
            return fed_error(FED_EINVAL, "strategy fedbuff (asynchronous) does not support privacy.mode %s or "
                                         "secure_aggregation yet", c->dp_mode);
        if (c->buffer_size > c->num_clients)
            return fed_error(FED_EINVAL, "buffer_size (%d) exceeds num_clients (%d)", c->buffer_size, c->num_clients);
    }
    return 0;
}

/* ---- YAML output -------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} outbuf;

static int out_write(void *data, unsigned char *bytes, size_t size) {
    outbuf *o = data;
    if (o->len + size + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->len + size + 1) cap *= 2;
        char *nb = realloc(o->buf, cap);
        if (!nb) return o->oom = 1, 0;
        o->buf = nb, o->cap = cap;
    }
    memcpy(o->buf + o->len, bytes, size);
    o->len += size;
    o->buf[o->len] = '\0';
    return 1;
}

/* Whether a string may be written unquoted: it must read back as a string in any
 * YAML 1.1/1.2 reader, so nothing that resolves to null, a boolean or a number.
 * Starting with a letter, '_' or '/' rules out numbers; the words rule out the rest.
 * Syntax characters (": ", " #", ...) are left to libyaml's own analysis. */
static int plain_safe(const char *s) {
    static const char *const words[] = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", NULL};
    if (!(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == '/')) return 0;
    for (const char *const *w = words; *w; w++)
        if (strcasecmp(s, *w) == 0) return 0;
    return 1;
}

/* Line breaks (ASCII and Unicode NEL, LS, PS) and other control characters would
 * spread a single-quoted value over several lines; double quotes escape them, so
 * every key stays on one line. */
static int needs_escapes(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f || (p[0] == 0xc2 && p[1] == 0x85) ||
            (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)))
            return 1;
    return 0;
}

static int emit_scalar(yaml_emitter_t *em, const char *s, int plain) {
    yaml_event_t ev;
    yaml_scalar_style_t style = needs_escapes(s) ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s), plain && !needs_escapes(s),
                                      1, style))
        return 0;
    return yaml_emitter_emit(em, &ev);
}

char *fed_config_to_yaml(const fed_config *c) {
    if (!c) return NULL;
    yaml_emitter_t em;
    yaml_event_t ev;
    outbuf o = {0};
    if (!yaml_emitter_initialize(&em)) return NULL;
    yaml_emitter_set_output(&em, out_write, &o);
    yaml_emitter_set_unicode(&em, 1);
    yaml_emitter_set_width(&em, -1); /* one line per key, never folded */
    int ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) && yaml_emitter_emit(&em, &ev);
    ok = ok && yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) && yaml_emitter_emit(&em, &ev);
    ok = ok && yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) &&
         yaml_emitter_emit(&em, &ev);
    for (size_t i = 0; ok && i < NKEYS; i++) {
        const fed_config_key *k = &keys[i];
        const char *field = (const char *)c + k->offset;
        char text[520];
        int plain = 1;
        ok = emit_scalar(&em, k->name, 1);
        switch (k->type) {
        case FED_CONFIG_INT: {
            int v;
            memcpy(&v, field, sizeof v);
            snprintf(text, sizeof text, "%d", v);
            break;
        }
        case FED_CONFIG_BOOL: {
            int v;
            memcpy(&v, field, sizeof v);
            snprintf(text, sizeof text, "%s", v ? "true" : "false");
            break;
        }
        case FED_CONFIG_U64: {
            uint64_t v;
            memcpy(&v, field, sizeof v);
            snprintf(text, sizeof text, "%" PRIu64, v);
            break;
        }
        case FED_CONFIG_DOUBLE: {
            double v;
            memcpy(&v, field, sizeof v);
            fmt_double(text, sizeof text, v);
            break;
        }
        default: {
            size_t n = strnlen(field, k->size);
            if (n == k->size) n--; /* unterminated by hand: fed_config_validate reports it */
            memcpy(text, field, n);
            text[n] = '\0';
            plain = plain_safe(text);
        }
        }
        ok = ok && emit_scalar(&em, text, plain);
    }
    ok = ok && yaml_mapping_end_event_initialize(&ev) && yaml_emitter_emit(&em, &ev);
    ok = ok && yaml_document_end_event_initialize(&ev, 1) && yaml_emitter_emit(&em, &ev);
    ok = ok && yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(&em, &ev);
    yaml_emitter_delete(&em);
    if (!ok || o.oom || !o.buf) {
        free(o.buf);
        return NULL;
    }
    return o.buf;
}

const char *fed_config_type_name(int type) {
    switch (type) {
    case FED_CONFIG_INT: return "int";
    case FED_CONFIG_U64: return "u64";
    case FED_CONFIG_DOUBLE: return "float";
    case FED_CONFIG_STRING: return "string";
    case FED_CONFIG_BOOL: return "bool";
    default: return "?";
    }
}

int fed_config_format_value(const fed_config *c, const fed_config_key *k, char *buf, size_t size) {
    if (!c || !k || !buf || size == 0) return fed_error(FED_EINVAL, "fed_config_format_value: NULL argument");
    const char *field = (const char *)c + k->offset;
    int n;
    switch (k->type) {
    case FED_CONFIG_INT:
    case FED_CONFIG_BOOL: {
        int v;
        memcpy(&v, field, sizeof v);
        n = k->type == FED_CONFIG_BOOL ? snprintf(buf, size, "%s", v ? "true" : "false") : snprintf(buf, size, "%d", v);
        break;
    }
    case FED_CONFIG_U64: {
        uint64_t v;
        memcpy(&v, field, sizeof v);
        n = snprintf(buf, size, "%" PRIu64, v);
        break;
    }
    case FED_CONFIG_DOUBLE: {
        double v;
        char t[40];
        memcpy(&v, field, sizeof v);
        fmt_double(t, sizeof t, v);
        n = snprintf(buf, size, "%s", t);
        break;
    }
    default:
        n = snprintf(buf, size, "%.*s", (int)strnlen(field, k->size), field);
    }
    if (n < 0 || (size_t)n >= size) return fed_error(FED_EINVAL, "key '%s': value does not fit in %zu bytes", k->name, size);
    return 0;
}
