/* Run configuration: defaults, every examples/ file, one case per error class
 * (code and message: key, line, did-you-mean), --set, cross-key validation, an
 * exact to_yaml round trip, and garbage input that must fail cleanly, not crash. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "federate/config.h"
#include "federate/error.h"

/* Repository root: $FEDERATE_SOURCE_DIR, else two levels up from this file. */
static const char *source_dir(void) {
    const char *e = getenv("FEDERATE_SOURCE_DIR");
    if (e && *e) return e;
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s", __FILE__);
    char *p = strrchr(buf, '/');
    if (!p) return "..";
    *p = '\0';
    p = strrchr(buf, '/');
    if (!p) return ".";
    *p = '\0';
    return buf;
}

#define CHECK_MSG(sub) do { if (!strstr(fed_last_error(), (sub))) { \
    fprintf(stderr, "%s:%d: message lacks \"%s\": %s\n", __FILE__, __LINE__, (sub), fed_last_error()); exit(1); } } while (0)
#define CHECK_NO_MSG(sub) do { if (strstr(fed_last_error(), (sub))) { \
    fprintf(stderr, "%s:%d: message has \"%s\": %s\n", __FILE__, __LINE__, (sub), fed_last_error()); exit(1); } } while (0)

static int load_str(fed_config *c, const char *yaml) { return fed_config_load_string(c, yaml, strlen(yaml)); }

/* Loads yaml over defaults and expects code rc with every listed substring. */
static void expect_load(const char *yaml, int rc, const char *s1, const char *s2, const char *s3) {
    fed_config c;
    fed_config_default(&c);
    int got = load_str(&c, yaml);
    if (got != rc) {
        fprintf(stderr, "loading <<%s>>: expected %d, got %d (%s)\n", yaml, rc, got, fed_last_error());
        exit(1);
    }
    if (s1) CHECK_MSG(s1);
    if (s2) CHECK_MSG(s2);
    if (s3) CHECK_MSG(s3);
}

static void expect_set(const char *key, const char *value, const char *s1, const char *s2) {
    fed_config c;
    fed_config_default(&c);
    int got = fed_config_set(&c, key, value);
    if (got != FED_EINVAL) {
        fprintf(stderr, "set %s=%s: expected FED_EINVAL, got %d (%s)\n", key, value, got, fed_last_error());
        exit(1);
    }
    if (s1) CHECK_MSG(s1);
    if (s2) CHECK_MSG(s2);
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(data, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

static void test_defaults(void) {
    fed_config c;
    fed_config_default(&c);
    CHECK(!strcmp(c.name, ""));
    CHECK_EQ_INT(c.seed, 0);
    CHECK_EQ_INT(c.threads, 0);
    CHECK(!strcmp(c.dataset, "mnist"));
    CHECK(!strcmp(c.data_root, "") && !strcmp(c.data_dir, ""));
    CHECK(!strcmp(c.data_distribution, "iid"));
    CHECK(c.non_iid_alpha == 0.5 && c.shards_per_client == 2 && c.quantity_sigma == 1.0);
    CHECK(c.local_test_fraction == 0.1);
    CHECK_EQ_INT(c.num_clients, 100);
    CHECK_EQ_INT(c.num_rounds, 20);
    CHECK_EQ_INT(c.clients_per_round, 0);
    CHECK(c.client_selection_ratio == 0.1);
    CHECK_EQ_INT(c.min_clients, 1);
    CHECK(!strcmp(c.client_selection, "uniform"));
    CHECK(c.dropout_probability == 0);
    CHECK(!strcmp(c.capability, "none") && c.capability_spread == 0.5 && c.adapt_to_capability == 0);
    CHECK(!strcmp(c.model, "cnn") && !strcmp(c.hidden, "200,200") && !strcmp(c.norm, "batch"));
    CHECK_EQ_INT(c.local_epochs, 5);
    CHECK_EQ_INT(c.batch_size, 10);
    CHECK(c.learning_rate == 0.1);
    CHECK(!strcmp(c.optimizer, "sgd") && c.momentum == 0 && c.weight_decay == 0 && c.lr_decay == 1);
    CHECK(!strcmp(c.strategy, "fedavg"));
    CHECK(c.server_lr == 1.0 && c.server_momentum == 0.9 && c.beta1 == 0.9 && c.beta2 == 0.99 && c.tau == 1e-3);
    CHECK(c.proximal_mu == 0.01 && c.q == 1.0 && c.lipschitz == 0 && c.clip_norm == 0);
    CHECK_EQ_INT(c.evaluation_every, 1);
    CHECK_EQ_INT(c.eval_batch_size, 250);
    CHECK_EQ_INT(c.checkpoint_every, 1);
    CHECK(!strcmp(c.state_dir, ""));
    CHECK_OK(fed_config_validate(&c));
    CHECK_EQ_INT(fed_config_clients_per_round(&c), 10);
    int h[8];
    CHECK_EQ_INT(fed_config_hidden(&c, h), 2);
    CHECK(h[0] == 200 && h[1] == 200);
}

static void test_key_table(void) {
    size_t n;
    const fed_config_key *k = fed_config_keys(&n);
    /* No field without a row: rows are in struct order and each starts exactly
     * where the previous one ends, rounded up to its type's alignment. */
    size_t end = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(k[i].name && k[i].help && k[i].help[0]);
        CHECK(k[i].type >= FED_CONFIG_INT && k[i].type <= FED_CONFIG_BOOL);
        CHECK(fed_config_find_key(k[i].name) == &k[i]);
        for (size_t j = 0; j < i; j++) CHECK(strcmp(k[i].name, k[j].name) != 0);
        size_t align = k[i].type == FED_CONFIG_STRING ? 1 : k[i].type == FED_CONFIG_INT || k[i].type == FED_CONFIG_BOOL ? 4 : 8;
        size_t want = k[i].type == FED_CONFIG_STRING ? k[i].size : align;
        if (k[i].offset != (end + align - 1) / align * align || k[i].size != want) {
            fprintf(stderr, "key '%s' at offset %zu size %zu: a field before it has no row, or its type is wrong\n",
                    k[i].name, k[i].offset, k[i].size);
            exit(1);
        }
        end = k[i].offset + k[i].size;
        if (k[i].choices) CHECK(k[i].type == FED_CONFIG_STRING);
    }
    CHECK((end + 7) / 8 * 8 == sizeof(fed_config));
    CHECK(fed_config_find_key("nope") == NULL && fed_config_find_key(NULL) == NULL);
    CHECK(!strcmp(fed_config_type_name(FED_CONFIG_DOUBLE), "float"));
}

static void test_examples(void) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/examples", source_dir());
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "cannot open %s (set FEDERATE_SOURCE_DIR)\n", dir);
        exit(1);
    }
    size_t nstrat;
    const char *const *strategies = fed_config_find_key("strategy")->choices;
    for (nstrat = 0; strategies[nstrat]; nstrat++) {}
    int seen[16] = {0}, files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".yaml")) continue;
        char path[4500];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        fed_config c;
        fed_config_default(&c);
        int rc = fed_config_load(&c, path);
        if (rc == 0) rc = fed_config_validate(&c);
        if (rc) {
            fprintf(stderr, "%s: %s\n", path, fed_last_error());
            exit(1);
        }
        /* Each example names itself after its file, so runs list reads well. */
        CHECK(strlen(c.name) + 5 == len && !strncmp(c.name, e->d_name, len - 5));
        for (size_t s = 0; s < nstrat; s++)
            if (!strcmp(c.strategy, strategies[s])) seen[s] = 1;
        files++;
    }
    closedir(d);
    CHECK(files >= 10);
    for (size_t s = 0; s < nstrat; s++) {
        if (!seen[s]) fprintf(stderr, "no example uses strategy %s\n", strategies[s]);
        CHECK(seen[s]);
    }
}

static void test_load_values(void) {
    fed_config c;
    fed_config_default(&c);
    CHECK_OK(load_str(&c, "# a comment\n"
                          "name: \"my run\"\n"
                          "seed: 18446744073709551615\n"
                          "num_clients: 50\n"
                          "clients_per_round: 5\n"
                          "learning_rate: 5e-2\n"
                          "adapt_to_capability: yes\n"
                          "capability: lognormal\n"
                          "strategy: fedyogi\n"
                          "hidden: '300, 100,10'\n"
                          "data_root:\n"
                          "momentum: 0.5  # trailing comment\n"));
    CHECK(!strcmp(c.name, "my run"));
    CHECK(c.seed == UINT64_MAX);
    CHECK_EQ_INT(c.num_clients, 50);
    CHECK_EQ_INT(fed_config_clients_per_round(&c), 5);
    CHECK(c.learning_rate == 0.05);
    CHECK_EQ_INT(c.adapt_to_capability, 1);
    CHECK(!strcmp(c.strategy, "fedyogi") && !strcmp(c.data_root, "") && c.momentum == 0.5);
    CHECK_EQ_INT(c.num_rounds, 20); /* untouched keys keep their values */
    int h[8];
    CHECK_EQ_INT(fed_config_hidden(&c, h), 3);
    CHECK(h[0] == 300 && h[1] == 100 && h[2] == 10);
    CHECK_OK(fed_config_validate(&c));

    /* Flow style, quoted numbers and every boolean spelling. */
    static const char *const truthy[] = {"true", "True", "YES", "on", "1"}, *const falsy[] = {"false", "No", "off", "0"};
    for (int i = 0; i < 5; i++) {
        char y[64];
        snprintf(y, sizeof y, "{adapt_to_capability: %s, num_rounds: '7'}", truthy[i]);
        CHECK_OK(load_str(&c, y));
        CHECK_EQ_INT(c.adapt_to_capability, 1);
        CHECK_EQ_INT(c.num_rounds, 7);
    }
    for (int i = 0; i < 4; i++) {
        char y[64];
        snprintf(y, sizeof y, "adapt_to_capability: %s", falsy[i]);
        CHECK_OK(load_str(&c, y));
        CHECK_EQ_INT(c.adapt_to_capability, 0);
    }
    /* Strings that look like other types stay strings; null words empty a string. */
    CHECK_OK(load_str(&c, "name: 123\nstate_dir: ~\n"));
    CHECK(!strcmp(c.name, "123") && !strcmp(c.state_dir, ""));
    CHECK_OK(load_str(&c, "name: 'null'\n"));
    CHECK(!strcmp(c.name, "null"));
    /* Longest string that fits. */
    char y[200];
    snprintf(y, sizeof y, "name: %.63s\n", "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij");
    CHECK_OK(load_str(&c, y));
    CHECK_EQ_INT(strlen(c.name), 63);
}

static void test_empty(void) {
    fed_config c, d;
    fed_config_default(&c);
    fed_config_default(&d);
    CHECK_OK(fed_config_load_string(&c, "", 0));
    CHECK_OK(fed_config_load_string(&c, NULL, 0));
    CHECK_OK(load_str(&c, "# only a comment\n\n"));
    CHECK_OK(load_str(&c, "---\n"));
    CHECK_OK(load_str(&c, "---\n...\n"));
    CHECK_OK(load_str(&c, "{}"));
    CHECK(memcmp(&c, &d, sizeof c) == 0);
    char path[] = "/tmp/fed_cfg_empty_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_OK(fed_config_load(&c, path));
    unlink(path);
    CHECK(memcmp(&c, &d, sizeof c) == 0);
}

static void test_errors(void) {
    /* unknown key, with and without a suggestion */
    expect_load("name: x\nseed: 1\nnum_client: 5\n", FED_EINVAL, "unknown key 'num_client' (line 3)",
                "did you mean 'num_clients'?", NULL);
    expect_load("learnig_rate: 0.1\n", FED_EINVAL, "(line 1)", "did you mean 'learning_rate'?", NULL);
    expect_load("Num_Rounds: 3\n", FED_EINVAL, "did you mean 'num_rounds'?", NULL, NULL);
    expect_load("\n\ncompletely_unrelated_thing: 1\n", FED_EINVAL, "unknown key 'completely_unrelated_thing' (line 3)",
                NULL, NULL);
    CHECK_NO_MSG("did you mean");
    expect_load("foo: 1\n", FED_EINVAL, "unknown key 'foo'", NULL, NULL);
    CHECK_NO_MSG("did you mean"); /* not "q" or "tau": a suggestion must keep part of the key */
    /* wrong types */
    expect_load("name: x\n\n\nnum_rounds: ten\n", FED_EINVAL, "key 'num_rounds' (line 4): 'ten' is not an integer",
                NULL, NULL);
    expect_load("num_rounds: 1.5\n", FED_EINVAL, "'1.5' is not an integer", NULL, NULL);
    expect_load("num_rounds: 1e3\n", FED_EINVAL, "is not an integer", NULL, NULL);
    expect_load("num_rounds:\n", FED_EINVAL, "key 'num_rounds' (line 1)", "is not an integer", NULL);
    expect_load("num_rounds: 99999999999999999999999\n", FED_EINVAL, "key 'num_rounds' (line 1)", "out of range",
                NULL);
    expect_load("num_clients: 4294967297\n", FED_EINVAL, "out of range [1, 10000000]", NULL, NULL);
    expect_load("seed: -1\n", FED_EINVAL, "key 'seed'", "not a non-negative integer", NULL);
    expect_load("seed: 18446744073709551616\n", FED_EINVAL, "key 'seed'", "out of range", NULL);
    expect_load("seed: 12abc\n", FED_EINVAL, "key 'seed'", NULL, NULL);
    expect_load("learning_rate: abc\n", FED_EINVAL, "key 'learning_rate' (line 1): 'abc' is not a number", NULL, NULL);
    expect_load("learning_rate: nan\n", FED_EINVAL, "key 'learning_rate'", "not a finite number", NULL);
    expect_load("learning_rate: inf\n", FED_EINVAL, "not a finite number", NULL, NULL);
    expect_load("learning_rate: .inf\n", FED_EINVAL, "key 'learning_rate'", NULL, NULL);
    expect_load("learning_rate: 1e999\n", FED_EINVAL, "not a finite number", NULL, NULL);
    expect_load("learning_rate: ' 0.1'\n", FED_EINVAL, "is not a number", NULL, NULL);
    expect_load("adapt_to_capability: maybe\n", FED_EINVAL, "key 'adapt_to_capability' (line 1): 'maybe' is not a boolean",
                NULL, NULL);
    /* out of range */
    expect_load("num_clients: 10\n\n\n\nclient_selection_ratio: 1.5\n", FED_EINVAL,
                "key 'client_selection_ratio' (line 5): 1.5 is out of range [0, 1]", NULL, NULL);
    expect_load("num_clients: 0\n", FED_EINVAL, "key 'num_clients' (line 1): 0 is out of range [1, 10000000]", NULL,
                NULL);
    expect_load("momentum: -0.5\n", FED_EINVAL, "-0.5 is out of range [0, 1]", NULL, NULL);
    /* choices and strings */
    expect_load("seed: 3\nstrategy: fedsgd\n", FED_EINVAL,
                "key 'strategy' (line 2): 'fedsgd' is not one of fedavg, fedavgm, fedprox, scaffold", NULL, NULL);
    expect_load("dataset: MNIST\n", FED_EINVAL, "is not one of", "did you mean 'mnist'?", NULL);
    expect_load("name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", FED_EINVAL,
                "key 'name' (line 1)", "at most 63", NULL);
    expect_load("hidden: 200,abc\n", FED_EINVAL, "key 'hidden' (line 1)", NULL, NULL);
    expect_load("hidden: '1,2,3,4,5,6,7,8,9'\n", FED_EINVAL, "key 'hidden'", NULL, NULL);
    expect_load("hidden: '0'\n", FED_EINVAL, "key 'hidden'", NULL, NULL);
    expect_load("name: \"a\\0b\"\n", FED_EINVAL, "key 'name'", "NUL", NULL);
    /* structure */
    expect_load("seed: 1\nnum_rounds:\n  a: 1\n", FED_EINVAL, "key 'num_rounds' (line 2)", "mapping", NULL);
    expect_load("num_rounds: [1, 2]\n", FED_EINVAL, "key 'num_rounds' (line 1)", "list", NULL);
    expect_load("num_rounds: 3\nseed: 1\nnum_rounds: 4\n", FED_EINVAL, "key 'num_rounds'", "lines 1 and 3", NULL);
    expect_load("num_rounds: &n 3\nnum_clients: *n\n", FED_EINVAL, "key 'num_clients' (line 2)", "alias", NULL);
    expect_load("[a, b]: 1\n", FED_EINVAL, "line 1", "key", NULL);
    expect_load("- a\n- b\n", FED_EFORMAT, "must be a mapping", "list", NULL);
    expect_load("just a string\n", FED_EFORMAT, "must be a mapping", NULL, NULL);
    expect_load("seed: 1\n---\nseed: 2\n", FED_EFORMAT, "line 2", "one YAML document", NULL);
    /* YAML syntax, with line and column */
    expect_load("seed: 1\nnum_rounds: 5: 6\n", FED_EFORMAT, "line 2, column", "mapping values are not allowed", NULL);
    expect_load("seed: 1\nname: {a: 1\n", FED_EINVAL, "key 'name' (line 2)", NULL, NULL); /* first problem wins */
    expect_load("seed: 1\n- item\n", FED_EFORMAT, "line 2, column 1", NULL, NULL);
    expect_load("name: \"unterminated\n", FED_EFORMAT, "YAML", NULL, NULL);
    expect_load("name: \xff\xfe\n", FED_EFORMAT, "YAML", NULL, NULL);
    expect_load("\tseed: 1\n", FED_EFORMAT, "line 1", NULL, NULL);

    /* A failed load leaves the configuration as it was. */
    fed_config c, d;
    fed_config_default(&c);
    fed_config_default(&d);
    CHECK(load_str(&c, "num_rounds: 7\nname: changed\nbogus: 1\n") == FED_EINVAL);
    CHECK(memcmp(&c, &d, sizeof c) == 0);
    CHECK(load_str(&c, "num_rounds: 7\nname: x\n- y\n") == FED_EFORMAT);
    CHECK(memcmp(&c, &d, sizeof c) == 0);

    /* File errors name the path; file messages carry it too. */
    CHECK(fed_config_load(&c, "/nonexistent/dir/run.yaml") == FED_EIO);
    CHECK_MSG("/nonexistent/dir/run.yaml");
    CHECK(fed_config_load(&c, "/tmp") == FED_EIO);
    CHECK_MSG("/tmp");
    char path[] = "/tmp/fed_cfg_bad_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    write_file(path, "seed: 1\nnum_client: 3\n", 22);
    CHECK(fed_config_load(&c, path) == FED_EINVAL);
    CHECK_MSG(path);
    CHECK_MSG("(line 2)");
    CHECK_MSG("did you mean 'num_clients'?");
    unlink(path);
    CHECK(fed_config_load(NULL, "x") == FED_EINVAL && fed_config_load(&c, NULL) == FED_EINVAL);
}

static void test_set(void) {
    fed_config c;
    fed_config_default(&c);
    CHECK_OK(load_str(&c, "num_rounds: 7\nname: from-file\n"));
    CHECK_OK(fed_config_set_assignment(&c, "num_rounds=50"));
    CHECK_OK(fed_config_set_assignment(&c, " learning_rate = 0.02"));
    CHECK_OK(fed_config_set_assignment(&c, "name=fedprox mu=0.01"));
    CHECK_OK(fed_config_set(&c, "strategy", "scaffold"));
    CHECK_OK(fed_config_set(&c, "adapt_to_capability", "on"));
    CHECK_OK(fed_config_set(&c, "state_dir", "null")); /* literal text, not YAML null */
    CHECK_OK(fed_config_set_assignment(&c, "data_root="));
    CHECK_EQ_INT(c.num_rounds, 50);
    CHECK(c.learning_rate == 0.02);
    CHECK(!strcmp(c.name, "fedprox mu=0.01"));
    CHECK(!strcmp(c.strategy, "scaffold") && c.adapt_to_capability == 1 && !strcmp(c.state_dir, "null"));
    CHECK(!strcmp(c.data_root, ""));

    expect_set("num_client", "3", "unknown key 'num_client'", "did you mean 'num_clients'?");
    CHECK_NO_MSG("line");
    expect_set("num_rounds", "ten", "key 'num_rounds': 'ten' is not an integer", NULL);
    expect_set("client_selection_ratio", "1.5", "key 'client_selection_ratio': 1.5 is out of range [0, 1]", NULL);
    expect_set("strategy", "fedsgd", "key 'strategy': 'fedsgd' is not one of fedavg, fedavgm, ", NULL);
    expect_set("name", "bad\xff", "key 'name'", "UTF-8");
    expect_set("seed", "", "key 'seed'", NULL);
    CHECK(fed_config_set_assignment(&c, "num_rounds") == FED_EINVAL);
    CHECK_MSG("key=value");
    CHECK(fed_config_set_assignment(&c, "=5") == FED_EINVAL);
    CHECK(fed_config_set_assignment(&c, "learnig_rate=1") == FED_EINVAL);
    CHECK_MSG("did you mean 'learning_rate'?");
    CHECK(fed_config_set(&c, NULL, "1") == FED_EINVAL && fed_config_set(&c, "seed", NULL) == FED_EINVAL);
    CHECK_EQ_INT(c.num_rounds, 50); /* failed sets changed nothing */

    char buf[64];
    CHECK_OK(fed_config_format_value(&c, fed_config_find_key("learning_rate"), buf, sizeof buf));
    CHECK(!strcmp(buf, "0.02"));
    CHECK_OK(fed_config_format_value(&c, fed_config_find_key("adapt_to_capability"), buf, sizeof buf));
    CHECK(!strcmp(buf, "true"));
    CHECK(fed_config_format_value(&c, fed_config_find_key("name"), buf, 4) == FED_EINVAL);
}

static void expect_invalid(const fed_config *c, const char *s1, const char *s2) {
    int rc = fed_config_validate(c);
    if (rc != FED_EINVAL) {
        fprintf(stderr, "validate: expected FED_EINVAL for %s, got %d\n", s1, rc);
        exit(1);
    }
    CHECK_MSG(s1);
    if (s2) CHECK_MSG(s2);
}

static void test_validate(void) {
    fed_config c;
#define FRESH(stmt) do { fed_config_default(&c); stmt; } while (0)
    FRESH(c.clients_per_round = 101);
    expect_invalid(&c, "clients_per_round", "num_clients");
    FRESH((c.clients_per_round = 5, c.min_clients = 6));
    expect_invalid(&c, "min_clients", "clients_per_round");
    FRESH(c.min_clients = 11); /* ratio 0.1 of 100 = 10 */
    expect_invalid(&c, "min_clients", "client_selection_ratio");
    FRESH(c.num_clients = 0);
    expect_invalid(&c, "num_clients", NULL);
    FRESH((fed_config_set(&c, "data_distribution", "dirichlet"), c.non_iid_alpha = 0));
    expect_invalid(&c, "dirichlet", "non_iid_alpha");
    FRESH((fed_config_set(&c, "data_distribution", "quantity"), c.quantity_sigma = 0));
    expect_invalid(&c, "quantity", "quantity_sigma");
    FRESH(c.learning_rate = 0);
    expect_invalid(&c, "learning_rate", NULL);
    FRESH(c.lr_decay = 0);
    expect_invalid(&c, "lr_decay", NULL);
    FRESH(c.server_lr = 0);
    expect_invalid(&c, "server_lr", NULL);
    FRESH((fed_config_set(&c, "strategy", "fedadam"), c.tau = 0));
    expect_invalid(&c, "fedadam", "tau");
    FRESH((fed_config_set(&c, "strategy", "fedyogi"), c.beta2 = 1));
    expect_invalid(&c, "fedyogi", "beta2");
    FRESH((fed_config_set(&c, "strategy", "fedavgm"), c.server_momentum = 1));
    expect_invalid(&c, "fedavgm", "server_momentum");
    FRESH(c.momentum = 1);
    expect_invalid(&c, "sgd", "momentum");
    FRESH(fed_config_set(&c, "client_selection", "capability"));
    expect_invalid(&c, "client_selection", "capability");
    FRESH(c.adapt_to_capability = 1);
    expect_invalid(&c, "adapt_to_capability", "capability");
    /* Hand-filled structs get the per-key checks too. */
    FRESH(c.learning_rate = NAN);
    expect_invalid(&c, "learning_rate", NULL);
    FRESH(c.num_rounds = -3);
    expect_invalid(&c, "num_rounds", "out of range");
    FRESH(memcpy(c.strategy, "fedsgd", 7));
    expect_invalid(&c, "strategy", "not one of");
    FRESH(memset(c.name, 'x', sizeof c.name));
    expect_invalid(&c, "name", "NUL");
    FRESH(c.adapt_to_capability = 2);
    expect_invalid(&c, "adapt_to_capability", NULL);
    FRESH(snprintf(c.hidden, sizeof c.hidden, "a,b"));
    expect_invalid(&c, "hidden", NULL);
    int h[8];
    CHECK(fed_config_hidden(&c, h) == FED_EINVAL);

    /* Valid edge cases. */
    FRESH((c.clients_per_round = 100, c.min_clients = 100));
    CHECK_OK(fed_config_validate(&c));
    FRESH((fed_config_set(&c, "client_selection", "capability"), fed_config_set(&c, "capability", "uniform")));
    CHECK_OK(fed_config_validate(&c));
#undef FRESH

    /* clients per round: count, else rounded ratio, at least 1 */
    fed_config_default(&c);
    c.clients_per_round = 7;
    CHECK_EQ_INT(fed_config_clients_per_round(&c), 7);
    c.clients_per_round = 0;
    c.client_selection_ratio = 0.25;
    c.num_clients = 10;
    CHECK_EQ_INT(fed_config_clients_per_round(&c), 3); /* 2.5 rounds away from zero */
    c.client_selection_ratio = 0;
    CHECK_EQ_INT(fed_config_clients_per_round(&c), 1);
    c.client_selection_ratio = 1;
    CHECK_EQ_INT(fed_config_clients_per_round(&c), 10);
    c.num_clients = 1;
    c.client_selection_ratio = 0.01;
    CHECK_EQ_INT(fed_config_clients_per_round(&c), 1);
}

/* Field-by-field comparison through the key table, then whole-struct bytes
 * (both sides start from fed_config_default, which zeroes padding). */
static void check_same(const fed_config *a, const fed_config *b) {
    size_t n;
    const fed_config_key *k = fed_config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        const char *fa = (const char *)a + k[i].offset, *fb = (const char *)b + k[i].offset;
        int same = k[i].type == FED_CONFIG_STRING ? strcmp(fa, fb) == 0 : memcmp(fa, fb, k[i].size) == 0;
        if (!same) {
            fprintf(stderr, "round trip changed key '%s'\n", k[i].name);
            exit(1);
        }
    }
    CHECK(memcmp(a, b, sizeof *a) == 0);
}

static void roundtrip(const fed_config *a) {
    char *y = fed_config_to_yaml(a);
    CHECK(y != NULL);
    fed_config b;
    fed_config_default(&b);
    /* Start b far from a so every key must really be read back. */
    CHECK_OK(load_str(&b, "seed: 99\nnum_rounds: 3\nname: other\nlearning_rate: 0.3\nadapt_to_capability: true\n"));
    int rc = load_str(&b, y);
    if (rc) {
        fprintf(stderr, "reloading to_yaml output failed: %s\n%s", fed_last_error(), y);
        exit(1);
    }
    check_same(a, &b);
    /* Exactly one "key: value" line per key, in table order. */
    size_t n;
    const fed_config_key *k = fed_config_keys(&n);
    const char *p = y;
    for (size_t i = 0; i < n; i++) {
        size_t kl = strlen(k[i].name);
        if (strncmp(p, k[i].name, kl) || strncmp(p + kl, ": ", 2)) {
            fprintf(stderr, "to_yaml line %zu is not '%s: ...':\n%s", i + 1, k[i].name, y);
            exit(1);
        }
        p = strchr(p, '\n');
        CHECK(p != NULL);
        p++;
    }
    CHECK(*p == '\0');
    free(y);
}

static void test_roundtrip(void) {
    fed_config a;
    fed_config_default(&a);
    roundtrip(&a);

    static const char *const tricky[] = {
        "yes", "No", "null", "~", "123", "-1.5", "0x10", "1e3", ".inf", "true", "200,200", "a: b", "x #y", "#z",
        "- item", "[x]", "{y}", "it's", "say \"hi\"", " lead", "trail ", "naïve ünïcode", "tab\there", "line\nbreak",
        "back\\slash", "cr\rlf\r\n", "nel\xc2\x85ls\xe2\x80\xa8ps\xe2\x80\xa9", "del\x7f", "\xef\xbb\xbf\x62om",
        "emoji \xf0\x9f\x98\x80", "&anchor", "*alias", "!tag", "%pct", "@at", "`tick", "|", ">", "?", ":", "-", "---",
        "...",
        "",
    };
    for (size_t i = 0; i < sizeof tricky / sizeof tricky[0]; i++) {
        fed_config_default(&a);
        CHECK_OK(fed_config_set(&a, "name", tricky[i]));
        CHECK_OK(fed_config_set(&a, "data_dir", tricky[i]));
        roundtrip(&a);
    }

    /* Every numeric key away from its default, including awkward doubles. */
    fed_config_default(&a);
    CHECK_OK(fed_config_set(&a, "seed", "18446744073709551615"));
    a.threads = 4096;
    a.tau = 1e-10;
    a.learning_rate = 0.1 + 0.2; /* 0.30000000000000004: needs all 17 digits */
    a.non_iid_alpha = 1.0 / 3.0;
    a.lipschitz = 123456789.125;
    a.clip_norm = 5e-324; /* smallest subnormal */
    a.weight_decay = -0.0;
    a.q = 0;
    a.num_clients = 10000000;
    a.adapt_to_capability = 1;
    CHECK_OK(fed_config_set(&a, "data_root", "/data/sets"));
    char longest[512];
    memset(longest, 'p', 511);
    longest[511] = '\0';
    CHECK_OK(fed_config_set(&a, "state_dir", longest));
    CHECK_OK(fed_config_set(&a, "hidden", "1000000, 1,2"));
    roundtrip(&a);

    /* Every example file round-trips too. */
    char path[4200];
    snprintf(path, sizeof path, "%s/examples/mnist-fedadam.yaml", source_dir());
    fed_config_default(&a);
    CHECK_OK(fed_config_load(&a, path));
    roundtrip(&a);
}

/* xorshift64*: a fixed, seedable stream so the garbage is the same every run. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static void test_garbage(void) {
    const size_t size = 10u << 20;
    char *buf = malloc(size + 1);
    CHECK(buf != NULL);
    fed_config c, d;
    fed_config_default(&d);
    char path[] = "/tmp/fed_cfg_garbage_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    static const char alphabet[] = "ab:- \n\t#'\"[]{},&*!|>?%@`~0123456789.e";
    for (int kind = 0; kind < 6; kind++) {
        for (size_t i = 0; i < size; i++) {
            uint64_t r = next_rand();
            switch (kind) {
            case 0: buf[i] = (char)(r >> 56); break;                                /* raw bytes */
            case 1: buf[i] = (char)(32 + (r >> 33) % 95); break;                    /* printable */
            case 2: buf[i] = alphabet[(r >> 33) % (sizeof alphabet - 1)]; break;    /* YAML punctuation */
            case 3: buf[i] = i < size / 2 ? '[' : ']'; break;                        /* deep nesting */
            case 4: buf[i] = i < 6 ? "name: "[i] : 'x'; break;                       /* huge scalar */
            default: buf[i] = "num_rounds: 5\n"[i % 14]; break;                      /* duplicate keys */
            }
        }
        buf[size] = '\0';
        fed_config_default(&c);
        int rc = fed_config_load_string(&c, buf, size);
        CHECK(rc != 0);
        CHECK(strlen(fed_last_error()) > 0 && strlen(fed_last_error()) < 1024);
        CHECK(memcmp(&c, &d, sizeof c) == 0);
        write_file(path, buf, size);
        CHECK(fed_config_load(&c, path) != 0);
        CHECK_MSG(path);
    }
    unlink(path);
    free(buf);
}

/* `privacy: {mode: ...}` is the same as the dotted keys, one level deep. */
static void test_sections(void) {
    fed_config c;
    fed_config_default(&c);
    CHECK_OK(load_str(&c, "num_rounds: 3\nprivacy:\n  mode: dp-fedavg\n  noise_multiplier: 0.7\nseed: 4\n"));
    CHECK(strcmp(c.dp_mode, "dp-fedavg") == 0);
    CHECK_NEAR(c.dp_noise_multiplier, 0.7, 0);
    CHECK_EQ_INT(c.seed, 4);
    CHECK_EQ_INT(c.num_rounds, 3);
    fed_config d;
    fed_config_default(&d);
    CHECK_OK(load_str(&d, "privacy.mode: dp-sgd\nprivacy: {delta: 1e-6}\n"));
    CHECK(strcmp(d.dp_mode, "dp-sgd") == 0);
    CHECK_NEAR(d.dp_delta, 1e-6, 0);
    CHECK_OK(fed_config_set(&d, "privacy.target_epsilon", "2"));
    CHECK_NEAR(d.dp_target_epsilon, 2, 0);
    expect_load("privacy: 3\n", FED_EINVAL, "'privacy' is a section", "line 1", NULL);
    expect_load("privacy:\n  modee: local\n", FED_EINVAL, "privacy.modee", "did you mean 'privacy.mode'", NULL);
    expect_load("privacy:\n  mode: loud\n", FED_EINVAL, "privacy.mode", "loud", NULL);
    expect_load("privacy:\n  inner:\n    mode: none\n", FED_EINVAL, NULL, NULL, NULL);
    expect_load("privacy:\n  mode: none\n  mode: local\n", FED_EINVAL, "appears twice", NULL, NULL);
}

int main(void) {
    test_sections();
    test_defaults();
    test_key_table();
    test_examples();
    test_load_values();
    test_empty();
    test_errors();
    test_set();
    test_validate();
    test_roundtrip();
    test_garbage();
    TEST_PASS("test_config");
}
