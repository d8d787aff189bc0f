/*
 * MLPerf Tiny serial protocol: command accumulation, parsing and answers.
 * See th_protocol.h for the command set. Plain C99, no TFLite Micro.
 */
#include "th_protocol.h"

#include <string.h>

#define TH_MAX_TOKENS 4
#define TH_DETAIL_CHARS 48 /* of untrusted text echoed in an error */
#define TH_TEXT_CHARS 120  /* of the board's own strings */

/* ---- output -------------------------------------------------------------------------------- */

static void out(const th_protocol *p, const char *text) {
    p->cfg.ops->write(p->cfg.user, text, strlen(text));
}

static void out_line(const th_protocol *p, const char *text) {
    out(p, text);
    out(p, "\r\n");
}

static void out_uint(const th_protocol *p, unsigned long long value) {
    char digits[24];
    size_t n = sizeof digits - 1;
    digits[n] = '\0';
    do {
        digits[--n] = (char)('0' + (int)(value % 10u));
        value /= 10u;
    } while (value != 0u && n > 0u);
    out(p, &digits[n]);
}

/* Untrusted text (a garbled command name, a board message) as printable ASCII without brackets. */
static void out_sanitized(const th_protocol *p, const char *text, size_t max) {
    char shown[TH_TEXT_CHARS + 1];
    size_t i;
    max = max < TH_TEXT_CHARS ? max : TH_TEXT_CHARS;
    for (i = 0; i < max && text[i] != '\0'; ++i) {
        unsigned char c = (unsigned char)text[i];
        shown[i] = (c < 0x20u || c > 0x7eu || c == '[' || c == ']') ? '?' : (char)c;
    }
    shown[i] = '\0';
    out(p, shown);
}

static void out_error(const th_protocol *p, const char *message, const char *detail) {
    out(p, "e-[");
    out(p, message);
    if (detail != NULL) {
        out_sanitized(p, detail, TH_DETAIL_CHARS);
    }
    out_line(p, "]");
}

static void out_lap(const th_protocol *p, uint32_t t) {
    out(p, "m-lap-us-");
    out_uint(p, t);
    out(p, "\r\n");
}

size_t th_protocol_format_float(float value, char *buf, size_t cap) {
    char tmp[32];
    size_t n = 0, i;
    double v = (double)value;
    if (v != v) {
        memcpy(tmp, "nan", 3);
        n = 3;
    } else {
        int negative = v < 0.0;
        v = negative ? -v : v;
        if (v > 1e12) { /* saturate: no model output of interest is this large */
            if (negative) {
                tmp[n++] = '-';
            }
            memcpy(tmp + n, "inf", 3);
            n += 3;
        } else {
            char digits[24];
            size_t d = 0;
            unsigned long long scaled = (unsigned long long)(v * 1e6 + 0.5);
            unsigned long long whole = scaled / 1000000u, frac = scaled % 1000000u;
            if (negative && scaled != 0u) {
                tmp[n++] = '-';
            }
            do {
                digits[d++] = (char)('0' + (int)(whole % 10u));
                whole /= 10u;
            } while (whole != 0u);
            while (d > 0u) {
                tmp[n++] = digits[--d];
            }
            tmp[n++] = '.';
            for (i = 6; i > 0u; --i) {
                tmp[n + i - 1u] = (char)('0' + (int)(frac % 10u));
                frac /= 10u;
            }
            n += 6;
        }
    }
    if (cap == 0u) {
        return 0u;
    }
    if (n >= cap) {
        n = cap - 1u;
    }
    memcpy(buf, tmp, n);
    buf[n] = '\0';
    return n;
}

/* ---- parsing helpers --------------------------------------------------------------------- */

/* A decimal number of at most 9 digits (no sign, no suffix: "12x" is not 12). */
static int parse_size(const char *text, size_t *value) {
    size_t v = 0, i;
    for (i = 0; text[i] != '\0'; ++i) {
        if (text[i] < '0' || text[i] > '9' || i >= 9u) {
            return 0;
        }
        v = v * 10u + (size_t)(text[i] - '0');
    }
    if (i == 0u) {
        return 0;
    }
    *value = v;
    return 1;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Split the command in place on spaces; returns the token count (at most TH_MAX_TOKENS + 1). */
static size_t tokenize(char *cmd, char *argv[TH_MAX_TOKENS]) {
    size_t argc = 0;
    char *s = cmd;
    while (*s != '\0') {
        while (*s == ' ') {
            *s++ = '\0';
        }
        if (*s == '\0') {
            break;
        }
        if (argc == TH_MAX_TOKENS) {
            return argc + 1u;
        }
        argv[argc++] = s;
        while (*s != '\0' && *s != ' ') {
            ++s;
        }
    }
    return argc;
}

/* ---- commands ---------------------------------------------------------------------------- */

static void cmd_profile(const th_protocol *p) {
    out(p, "m-profile-[");
    out_sanitized(p, p->cfg.firmware, TH_TEXT_CHARS);
    out_line(p, "]");
    out(p, "m-model-[");
    out_sanitized(p, p->cfg.ops->model_id(p->cfg.user), TH_TEXT_CHARS);
    out_line(p, "]");
}

static void print_results(const th_protocol *p) {
    size_t i, count = p->cfg.ops->output_count(p->cfg.user);
    char number[32];
    out(p, "m-results-[");
    for (i = 0; i < count; ++i) {
        th_protocol_format_float(p->cfg.ops->output_value(p->cfg.user, i), number, sizeof number);
        if (i > 0u) {
            out(p, ",");
        }
        out(p, number);
    }
    out_line(p, "]");
}

static void model_loaded(th_protocol *p) {
    const char *err = p->cfg.ops->load_model(p->cfg.user, p->cfg.model_buf, p->model_size);
    p->model_size = p->model_pos = 0;
    if (err != NULL) {
        out_error(p, "Model rejected: ", err);
        return;
    }
    p->input_size = p->input_pos = 0; /* the new model may take another input */
    p->have_results = 0;
    out_line(p, "m-model-load-done");
    cmd_profile(p);
}

/* `db load N`, `db HEX`, `model load N`, `model HEX`. */
static void cmd_buffer(th_protocol *p, size_t argc, char *argv[], int is_model) {
    uint8_t *buf = is_model ? p->cfg.model_buf : p->cfg.input_buf;
    size_t cap = is_model ? p->cfg.model_cap : p->cfg.input_cap;
    size_t *size = is_model ? &p->model_size : &p->input_size;
    size_t *pos = is_model ? &p->model_pos : &p->input_pos;
    size_t len, i, n;

    if (argc < 2u) {
        out_error(p, is_model ? "Command 'model' requires a subcommand" : "Command 'db' requires a subcommand",
                  NULL);
        return;
    }
    if (strcmp(argv[1], "load") == 0) {
        if (argc != 3u || !parse_size(argv[2], &n) || n == 0u) {
            out_error(p, "Command 'load' requires a number of bytes > 0", NULL);
            return;
        }
        *size = *pos = 0;
        if (n > cap) {
            out(p, "e-[");
            out_uint(p, n);
            out(p, " bytes exceed the ");
            out_uint(p, cap);
            out_line(p, "-byte buffer]");
            return;
        }
        *size = n;
        p->have_results = is_model ? p->have_results : 0;
        out(p, "m-[Expecting ");
        out_uint(p, n);
        out_line(p, " bytes]");
        return;
    }
    if (*size == 0u) {
        out_error(p, "Buffer not allocated: send the load command first", NULL);
        return;
    }
    if (argc != 2u) {
        out_error(p, "Invalid hex data: expected one run of hex digits", NULL);
        return;
    }
    len = strlen(argv[1]);
    if ((len & 1u) != 0u) {
        out_error(p, "Odd number of hex digits", NULL);
        return;
    }
    for (i = 0; i < len; ++i) {
        if (hex_value(argv[1][i]) < 0) {
            out_error(p, "Invalid hex digit in ", argv[1]);
            return;
        }
    }
    if (len / 2u > *size - *pos) {
        out(p, "e-[Data overflows the ");
        out_uint(p, *size);
        out_line(p, " bytes announced by load]");
        return;
    }
    for (i = 0; i < len; i += 2u) {
        buf[(*pos)++] = (uint8_t)((hex_value(argv[1][i]) << 4) | hex_value(argv[1][i + 1u]));
    }
    if (*pos == *size) {
        if (is_model) {
            model_loaded(p);
        } else {
            out_line(p, "m-load-done");
        }
    }
}

static void cmd_infer(th_protocol *p, size_t argc, char *argv[]) {
    const th_board_ops *ops = p->cfg.ops;
    size_t n = 1, w = 10, i;
    uint32_t t0, t1;
    const char *err;

    if (argc >= 2u && (!parse_size(argv[1], &n) || n == 0u)) {
        out_error(p, "Inference iterations must be >0", NULL);
        return;
    }
    if (argc >= 3u && !parse_size(argv[2], &w)) {
        out_error(p, "Inference warmup must be >=0", NULL);
        return;
    }
    if (p->input_size == 0u || p->input_pos != p->input_size) {
        out_error(p, "No input loaded: send db load N and db HEX first", NULL);
        return;
    }
    err = ops->set_input(p->cfg.user, p->cfg.input_buf, p->input_size);
    if (err != NULL) {
        out_error(p, "Input rejected: ", err);
        return;
    }
    out(p, "m-warmup-start-");
    out_uint(p, w);
    out(p, "\r\n");
    for (i = 0; i < w; ++i) {
        if ((err = ops->invoke(p->cfg.user)) != NULL) {
            out_error(p, "Inference failed: ", err);
            return;
        }
    }
    out_line(p, "m-warmup-done");
    out(p, "m-infer-start-");
    out_uint(p, n);
    out(p, "\r\n");
    /* both stamps are printed after the loop so that serial output is not timed */
    t0 = ops->timestamp_us(p->cfg.user);
    for (i = 0; i < n; ++i) {
        if ((err = ops->invoke(p->cfg.user)) != NULL) {
            out_error(p, "Inference failed: ", err);
            return;
        }
    }
    t1 = ops->timestamp_us(p->cfg.user);
    out_lap(p, t0);
    out_lap(p, t1);
    out_line(p, "m-infer-done");
    /* TFLM reuses the input tensor's arena memory for later activations: the results come from one
     * more, untimed inference on a fresh copy of the input */
    if ((err = ops->set_input(p->cfg.user, p->cfg.input_buf, p->input_size)) != NULL ||
        (err = ops->invoke(p->cfg.user)) != NULL) {
        out_error(p, "Inference failed: ", err);
        return;
    }
    p->have_results = 1;
    print_results(p);
}

static void dispatch(th_protocol *p) {
    const th_board_ops *ops = p->cfg.ops;
    char *argv[TH_MAX_TOKENS];
    size_t argc;

    p->cfg.cmd_buf[p->cmd_len] = '\0';
    argc = tokenize(p->cfg.cmd_buf, argv);
    if (argc == 0u) {
        /* an empty command is a no-op: just m-ready */
    } else if (argc > TH_MAX_TOKENS) {
        out_error(p, "Too many arguments to ", argv[0]);
    } else if (strcmp(argv[0], "name") == 0) {
        out(p, "m-name-dut-[");
        out_sanitized(p, p->cfg.vendor, TH_TEXT_CHARS);
        out_line(p, "]");
    } else if (strcmp(argv[0], "profile") == 0) {
        cmd_profile(p);
    } else if (strcmp(argv[0], "timestamp") == 0) {
        out_lap(p, ops->timestamp_us(p->cfg.user));
    } else if (strcmp(argv[0], "db") == 0) {
        cmd_buffer(p, argc, argv, 0);
    } else if (strcmp(argv[0], "model") == 0 && p->cfg.model_buf != NULL && ops->load_model != NULL) {
        cmd_buffer(p, argc, argv, 1);
    } else if (strcmp(argv[0], "infer") == 0) {
        cmd_infer(p, argc, argv);
    } else if (strcmp(argv[0], "results") == 0) {
        if (p->have_results) {
            print_results(p);
        } else {
            out_error(p, "No results: run infer first", NULL);
        }
    } else if (strcmp(argv[0], "arena") == 0 && ops->arena_used != NULL) {
        out(p, "m-arena-used-");
        out_uint(p, ops->arena_used(p->cfg.user));
        out(p, "\r\nm-arena-size-");
        out_uint(p, p->cfg.arena_size);
        out(p, "\r\n");
    } else if (strcmp(argv[0], "input-format") == 0 && ops->input_format != NULL) {
        out(p, "m-input-format-[");
        out_sanitized(p, ops->input_format(p->cfg.user), TH_TEXT_CHARS);
        out_line(p, "]");
    } else {
        out_error(p, "Unknown command: ", argv[0]);
    }
    out_line(p, "m-ready");
}

/* ---- public ------------------------------------------------------------------------------- */

void th_protocol_init(th_protocol *p, const th_protocol_config *cfg) {
    memset(p, 0, sizeof *p);
    p->cfg = *cfg;
}

void th_protocol_boot(th_protocol *p) {
    out_line(p, "m-timestamp-mode-performance");
    out_line(p, "m-init-done");
    out_line(p, "m-ready");
}

void th_protocol_feed(th_protocol *p, const uint8_t *data, size_t len) {
    size_t i;
    for (i = 0; i < len; ++i) {
        char c = (char)data[i];
        if (c == '\r' || c == '\n') {
            continue;
        }
        if (c != '%') {
            if (p->cmd_len + 1u < p->cfg.cmd_cap) {
                p->cfg.cmd_buf[p->cmd_len++] = c;
            } else {
                p->cmd_overflow = 1;
            }
            continue;
        }
        if (p->cmd_overflow) {
            out(p, "e-[Command too long: the limit is ");
            out_uint(p, p->cfg.cmd_cap - 1u);
            out_line(p, " characters]");
            out_line(p, "m-ready");
        } else {
            dispatch(p);
        }
        p->cmd_len = 0;
        p->cmd_overflow = 0;
    }
}
