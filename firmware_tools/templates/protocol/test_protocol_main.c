/*
 * Host test driver for th_protocol.c: commands on stdin, answers on stdout.
 *
 * A fake board stands in for TFLite Micro so that every answer is predictable:
 * the input is 8 bytes; each inference advances the clock by 1500 us, starting
 * just below the 32-bit wrap; the outputs are [sum of input bytes, first input
 * byte / 4, -0.5, 1/3, inferences so far]. The model-load extension accepts
 * any buffer carrying the TFLite file identifier "TFL3" at offset 4.
 *
 *   test_protocol_main [--no-extensions] < commands
 */
#include <stdio.h>
#include <string.h>

#include "th_protocol.h"

#define INPUT_BYTES 8u

typedef struct {
    uint32_t clock_us;
    const uint8_t *input;
    size_t input_len;
    unsigned long inferences;
    char model_id[40];
} fake_board;

static void board_write(void *user, const char *text, size_t len) {
    (void)user;
    fwrite(text, 1, len, stdout);
}

static uint32_t board_timestamp(void *user) {
    return ((fake_board *)user)->clock_us;
}

static const char *board_set_input(void *user, const uint8_t *data, size_t len) {
    fake_board *b = (fake_board *)user;
    if (len != INPUT_BYTES) {
        return "the model takes 8 bytes";
    }
    b->input = data;
    b->input_len = len;
    return NULL;
}

static const char *board_invoke(void *user) {
    fake_board *b = (fake_board *)user;
    b->clock_us += 1500u; /* wraps like a real 32-bit microsecond timer */
    b->inferences++;
    return NULL;
}

static size_t board_output_count(void *user) {
    (void)user;
    return 5u;
}

static float board_output_value(void *user, size_t index) {
    const fake_board *b = (const fake_board *)user;
    unsigned sum = 0;
    size_t i;
    switch (index) {
    case 0:
        for (i = 0; i < b->input_len; ++i) {
            sum += b->input[i];
        }
        return (float)sum;
    case 1:
        return (float)b->input[0] / 4.0f;
    case 2:
        return -0.5f;
    case 3:
        return 1.0f / 3.0f;
    default:
        return (float)b->inferences;
    }
}

static const char *board_model_id(void *user) {
    return ((fake_board *)user)->model_id;
}

static const char *board_load_model(void *user, const uint8_t *model, size_t len) {
    fake_board *b = (fake_board *)user;
    if (len < 8u || memcmp(model + 4, "TFL3", 4) != 0) {
        return "not a TFLite flatbuffer";
    }
    sprintf(b->model_id, "loaded-%lu", (unsigned long)len);
    return NULL;
}

static size_t board_arena_used(void *user) {
    (void)user;
    return 1234u;
}

static const char *board_input_format(void *user) {
    (void)user;
    return "dtype=int8,shape=1x8,bytes=8";
}

int main(int argc, char **argv) {
    static char cmd_buf[80]; /* the reference firmware's EE_CMD_SIZE */
    static uint8_t input_buf[16];
    static uint8_t model_buf[64];
    fake_board board = {4294963000u, NULL, 0, 0, "fake"};
    th_board_ops ops = {board_write, board_timestamp, board_set_input, board_invoke, board_output_count,
                        board_output_value, board_model_id, board_load_model, board_arena_used,
                        board_input_format};
    th_protocol_config cfg;
    th_protocol protocol;
    uint8_t chunk[7]; /* small reads: commands arrive split across feeds */
    size_t n;

    if (argc > 1 && strcmp(argv[1], "--no-extensions") == 0) {
        ops.load_model = NULL;
        ops.arena_used = NULL;
        ops.input_format = NULL;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.ops = &ops;
    cfg.user = &board;
    cfg.vendor = "host-test";
    cfg.firmware = "th_protocol test driver";
    cfg.cmd_buf = cmd_buf;
    cfg.cmd_cap = sizeof cmd_buf;
    cfg.input_buf = input_buf;
    cfg.input_cap = sizeof input_buf;
    cfg.model_buf = model_buf;
    cfg.model_cap = sizeof model_buf;
    cfg.arena_size = 4096u;

    th_protocol_init(&protocol, &cfg);
    th_protocol_boot(&protocol);
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0u) {
        th_protocol_feed(&protocol, chunk, n);
    }
    fflush(stdout);
    return 0;
}
