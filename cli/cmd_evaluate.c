/* federate evaluate: loads saved weights into a zoo model and reports accuracy
 * (percent) and the confusion matrix on a data set's test split. */
#include <stdlib.h>
#include "args.h"
#include "common.h"

static const char *const datasets[] = {"mnist", "fashion-mnist", "cifar10", NULL};
static const char *const norms[] = {"batch", "group", NULL};

int cmd_evaluate(int argc, char **argv) {
    const char *dataset = "mnist", *model_name = "cnn", *weights = NULL, *data_dir = NULL, *hidden = NULL;
    const char *norm = "batch";
    int batch = 500, train_split = 0;
    const arg_spec specs[] = {
        {"model", ARG_STRING, &model_name, "model from the zoo the weights belong to", NO_RANGE, NULL},
        {"weights", ARG_STRING, &weights, "FILE.safetensors (required)", NO_RANGE, NULL},
        {"dataset", ARG_STRING, &dataset, "data set", NO_RANGE, datasets},
        {"data-dir", ARG_STRING, &data_dir, "data directory", NO_RANGE, NULL},
        {"hidden", ARG_STRING, &hidden, "mlp hidden sizes, e.g. 200,200", NO_RANGE, NULL},
        {"norm", ARG_STRING, &norm, "resnet normalization", NO_RANGE, norms},
        {"batch-size", ARG_INT, &batch, "examples per forward pass (default 500)", 1, 1 << 20, NULL},
        {"train-split", ARG_FLAG, &train_split, "evaluate on the training split instead of the test split", NO_RANGE, NULL},
        ARG_END,
    };
    int rc = args_parse("evaluate", "--weights FILE.safetensors [FLAGS]", specs, argc, argv, 2, NULL, 0, NULL);
    if (rc) return rc > 0 ? 0 : 2;
    if (!weights) {
        fprintf(stderr, "federate evaluate: --weights FILE.safetensors is required\n");
        return 2;
    }
    fed_dataset d = {0};
    if ((rc = fed_dataset_load(dataset, train_split, data_dir, &d))) return cli_fail("evaluate", "cannot load the data set", rc);
    fed_model *m = NULL;
    int64_t *conf = NULL;
    int status = 1;
    if (cli_model_for("evaluate", model_name, d.c, d.h, d.w, d.num_classes, hidden, norm, &m)) goto out;
    if ((rc = fed_model_load(m, weights))) { cli_fail("evaluate", "cannot load the weights", rc); goto out; }
    int k = fed_model_num_classes(m);
    conf = calloc((size_t)k * k, sizeof *conf);
    double loss, acc;
    if ((rc = fed_model_evaluate(m, &d, batch, &loss, &acc, conf))) { cli_fail("evaluate", "evaluation failed", rc); goto out; }
    printf("examples: %d\n", d.n);
    printf("loss: %.4f\n", loss);
    printf("accuracy: %.2f\n", 100 * acc);
    printf("confusion matrix (rows: true label, columns: predicted label)\n     ");
    for (int j = 0; j < k; j++) printf("%6d", j);
    printf("\n");
    for (int i = 0; i < k; i++) {
        printf("%4d ", i);
        for (int j = 0; j < k; j++) printf("%6lld", (long long)conf[(size_t)i * k + j]);
        printf("\n");
    }
    status = 0;
out:
    free(conf);
    fed_model_free(m);
    fed_dataset_free(&d);
    return status;
}
