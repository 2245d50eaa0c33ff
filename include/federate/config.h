/* Run configuration: the YAML keys users of FL frameworks know (num_clients,
 * num_rounds, clients_per_round, local_epochs, ...), parsed with libyaml,
 * overridable with --set key=value, validated with errors that name the key, the
 * value and what is allowed. Every key is listed in docs/config.md. */
#ifndef FEDERATE_CONFIG_H
#define FEDERATE_CONFIG_H
#include <stddef.h>
#include <stdint.h>

typedef struct fed_config {
    /* experiment */
    char name[64];              /* name: free text shown in `runs list` */
    uint64_t seed;              /* seed: every random stream derives from it (0) */
    int threads;                /* threads: clients trained side by side (0 = all cores) */
    /* data */
    char dataset[32];           /* dataset: mnist | fashion-mnist | cifar10 */
    char data_root[512];        /* data_root: where data sets live ("" = $FEDERATE_DATA) */
    char data_dir[512];         /* data_dir: per-client folders from `federate partition` ("" = partition here) */
    char data_distribution[16]; /* data_distribution: iid | dirichlet | shards | quantity */
    double non_iid_alpha;       /* non_iid_alpha: Dirichlet concentration (0.5) */
    int shards_per_client;      /* shards_per_client: pathological split (2) */
    double quantity_sigma;      /* quantity_sigma: log-normal spread of client sizes (1.0) */
    double local_test_fraction; /* local_test_fraction: share of each client's data for local evaluation (0.1) */
    /* federation */
    int num_clients;            /* num_clients (100) */
    int num_rounds;             /* num_rounds (20) */
    int clients_per_round;      /* clients_per_round: a count; 0 = use client_selection_ratio */
    double client_selection_ratio; /* client_selection_ratio: a fraction (0.1) */
    int min_clients;            /* min_clients: fewest finished clients to aggregate a round (1) */
    char client_selection[16];  /* client_selection: uniform | stratified | capability | speed | oort | power-of-choice */
    double dropout_probability; /* dropout_probability: chance a selected client drops (0) */
    /* client capability profiles */
    char capability[16];        /* capability: none | uniform | lognormal (speed factor distribution) */
    double capability_spread;   /* capability_spread: range/sigma of the speed factors (0.5) */
    int adapt_to_capability;    /* adapt_to_capability: scale local epochs, batch and lr by capability (false) */
    /* simulated systems: device profiles on a virtual clock (src/sim/clock.c) */
    char device_profiles[16];   /* device_profiles: none | uniform | lognormal | file */
    char device_profiles_file[512]; /* device_profiles_file: CSV client,speed,up,down,latency[,availability[,failure]] */
    double device_spread;       /* device_spread: lognormal sigma of speeds and bandwidths (1.0) */
    double availability;        /* availability: fraction of time a device is online (1) */
    double availability_period_s; /* availability_period_s: length of a device's on/off cycle (3600) */
    char availability_model[16]; /* availability_model: always | periodic | markov | trace (periodic) */
    char availability_trace[512]; /* availability_trace: CSV client,start_s,end_s of online intervals */
    double availability_mean_on_s;  /* availability_mean_on_s: markov mean online sojourn (3600) */
    double availability_mean_off_s; /* availability_mean_off_s: markov mean offline sojourn (1800) */
    double failure_probability; /* failure_probability: chance a device fails during a round (0) */
    double round_deadline_s;    /* round_deadline_s: simulated seconds per round (0 = none) */
    double over_selection;      /* over_selection: extra fraction of clients selected (0) */
    /* system-aware selection */
    double oort_alpha;          /* oort_alpha: straggler penalty exponent (2) */
    double oort_epsilon;        /* oort_epsilon: initial exploration fraction (0.9) */
    int poc_candidates;         /* poc_candidates: power-of-choice d (0 = 2 x clients per round) */
    /* asynchronous FL (strategy fedbuff) */
    int buffer_size;            /* buffer_size: FedBuff K, updates per server step (10) */
    int concurrency;            /* concurrency: clients training at once (0 = 2 x buffer_size) */
    char staleness[16];         /* staleness: polynomial | hinge | constant */
    double staleness_a;         /* staleness_a: exponent / slope a (0.5) */
    double staleness_b;         /* staleness_b: hinge b (4) */
    /* model and local training */
    char model[32];             /* model: mlp | cnn | cnn-bn | resnet | cnn-dp */
    char hidden[64];            /* hidden: mlp hidden sizes, e.g. "200,200" */
    char norm[8];               /* norm: resnet normalization batch | group */
    char kernels[12];           /* kernels: fast (Winograd 5x5 convolutions, fused plain-SGD step) | reference */
    int local_epochs;           /* local_epochs: E (5) */
    int local_steps;            /* local_steps: > 0 replaces local_epochs by this many steps (0) */
    int batch_size;             /* batch_size: B (10) */
    double learning_rate;       /* learning_rate: client lr (0.1) */
    char optimizer[16];         /* optimizer: sgd | adam | adagrad */
    double momentum;            /* momentum: client SGD momentum (0) */
    double weight_decay;        /* weight_decay (0) */
    double lr_decay;            /* lr_decay: client lr multiplied by this every round (1) */
    int augment_crop;           /* augment_crop: random crop after padding by this many pixels (0 = off) */
    int augment_flip;           /* augment_flip: random horizontal flips (false) */
    double augment_rotate;      /* augment_rotate: random rotation up to this many degrees (0 = off) */
    /* strategy */
    char strategy[16];          /* strategy: fedavg | fedavgm | fedprox | scaffold | qfedavg | fedadam | fedyogi | fedadagrad | fednova | fedbuff */
    double server_lr;           /* server_lr (1.0) */
    double server_momentum;     /* server_momentum: FedAvgM (0.9) */
    double beta1, beta2;        /* beta1, beta2: FedOpt (0.9, 0.99) */
    double tau;                 /* tau: FedOpt adaptivity (1e-3) */
    double proximal_mu;         /* proximal_mu: FedProx mu (0.01) */
    double q;                   /* q: q-FedAvg (1.0) */
    double lipschitz;           /* lipschitz: q-FedAvg L (0 = 1/learning_rate) */
    /* update pipeline */
    double clip_norm;           /* clip_norm: clip each client update to this L2 norm (0 = off) */
    char compression[128];      /* compression: codec chain for updates, e.g. "topk:0.01,q8,zstd" ("" = raw float32) */
    int compression_error_feedback; /* compression_error_feedback: keep what was not sent per client (true) */
    char download_compression[128]; /* download_compression: codec chain for the global model sent to clients ("" = raw) */
    /* secure aggregation (the secure_aggregation: section) */
    int sa_enabled;             /* secure_aggregation.enabled (false) */
    char sa_graph[8];           /* secure_aggregation.graph: full | harary */
    double sa_clip;             /* secure_aggregation.clipping_range: coordinates clipped to [-c, c] (1.0) */
    int sa_bits;                /* secure_aggregation.bits: quantization bits (16) */
    double sa_adversarial;      /* secure_aggregation.adversarial_fraction (0.05) */
    double sa_dropout;          /* secure_aggregation.dropout_fraction: tolerated drop-outs (0.3) */
    double sa_stage_dropout;    /* secure_aggregation.stage_dropout: simulated drop-out per protocol stage (0) */
    int sa_consistency;         /* secure_aggregation.consistency_check: active-adversary variant (false;
                                   over the network the clients need --peer-keys) */
    /* differential privacy (the privacy: section) */
    char dp_mode[24];           /* privacy.mode: none | dp-sgd | dp-fedavg | local | distributed | distributed-dp-sgd */
    double dp_noise_multiplier; /* privacy.noise_multiplier: z (1.0) */
    double dp_clip;             /* privacy.clip_norm: C (0 = 1.0 for dp-sgd, 0.1 for dp-fedavg/local) */
    int dp_adaptive;            /* privacy.adaptive_clipping (false) */
    double dp_target_quantile;  /* privacy.target_quantile: gamma (0.5) */
    double dp_clip_lr;          /* privacy.clip_learning_rate: eta (0.2) */
    double dp_count_stddev;     /* privacy.clipped_count_stddev: sigma_b (0 = m/20) */
    double dp_target_epsilon;   /* privacy.target_epsilon: budget (0 = none) */
    double dp_delta;            /* privacy.delta (1e-5) */
    char dp_noise_source[8];    /* privacy.noise_source: seeded | secure */
    char dp_conversion[10];     /* privacy.conversion: improved | classic */
    /* evaluation and output */
    int evaluation_every;       /* evaluation_every: rounds between global evaluations (1) */
    double target_accuracy;     /* target_accuracy: stop once the global test accuracy (percent) reaches it; 0 = off */
    int eval_batch_size;        /* eval_batch_size (250) */
    int checkpoint_every;       /* checkpoint_every: rounds between checkpoints in the store (1) */
    char state_dir[512];        /* state_dir: where large client state spills ("" = next to the store) */
} fed_config;

/* Defaults as commented above. */
void fed_config_default(fed_config *c);
/* Reads a YAML mapping of key: scalar over the current values of c. Errors:
 * FED_EIO (file), FED_EFORMAT (YAML syntax, with line and column), FED_EINVAL
 * (unknown key with a did-you-mean, wrong type, out of range), naming the key. */
int fed_config_load(fed_config *c, const char *path);
int fed_config_load_string(fed_config *c, const char *yaml, size_t len);
/* Sets one key from its text form (for --set key=value); same errors. */
int fed_config_set(fed_config *c, const char *key, const char *value);
/* "key=value" form. */
int fed_config_set_assignment(fed_config *c, const char *assignment);
/* Cross-key checks (e.g. clients_per_round <= num_clients); names the keys. */
int fed_config_validate(const fed_config *c);
/* Every key with its current value as YAML, malloc'd; NULL on OOM. */
char *fed_config_to_yaml(const fed_config *c);
/* Number of clients selected per round (count or ratio, at least 1). */
int fed_config_clients_per_round(const fed_config *c);

/* The key table, for docs and tools. */
typedef struct fed_config_key {
    const char *name;
    int type;               /* 0 int, 1 u64, 2 double, 3 string, 4 bool */
    size_t offset, size;    /* into fed_config */
    double min, max;        /* numbers; min > max = unchecked */
    const char *const *choices; /* strings: allowed values or NULL */
    const char *help;
} fed_config_key;
const fed_config_key *fed_config_keys(size_t *count);

/* Names for fed_config_key.type (the values are the ones listed above). */
enum fed_config_type {
    FED_CONFIG_INT = 0,
    FED_CONFIG_U64 = 1,
    FED_CONFIG_DOUBLE = 2,
    FED_CONFIG_STRING = 3,
    FED_CONFIG_BOOL = 4,
};
/* "int", "u64", "float", "string", "bool". */
const char *fed_config_type_name(int type);
/* The row for a key name, or NULL. */
const fed_config_key *fed_config_find_key(const char *name);
/* One key's current value in the text form fed_config_set accepts back (strings
 * unquoted, numbers as short as round-trips exactly); FED_EINVAL if it does not fit. */
int fed_config_format_value(const fed_config *c, const fed_config_key *k, char *buf, size_t size);
/* Parses `hidden` into sizes (at most 8); returns the count or FED_EINVAL. */
int fed_config_hidden(const fed_config *c, int sizes[8]);

#endif
