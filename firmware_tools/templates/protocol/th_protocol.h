/*
 * MLPerf Tiny (EEMBC runner) serial protocol for a TFLite Micro board.
 *
 * Plain C99, no TFLite Micro, no malloc, no printf: the firmware hands in its
 * buffers and a few callbacks, feeds received bytes in, and the parser answers
 * through the write callback. Compatible with the MLPerf Tiny host runner:
 *
 *   name%           -> m-name-dut-[VENDOR]
 *   profile%        -> m-profile-[FIRMWARE]  m-model-[MODEL]
 *   timestamp%      -> m-lap-us-T
 *   db load N%      -> m-[Expecting N bytes]     then  db HEX%  ...  -> m-load-done
 *   infer N W%      -> m-warmup-start-W m-warmup-done m-infer-start-N m-lap-us-T0
 *                      m-lap-us-T1 m-infer-done m-results-[v,...]
 *   results%        -> m-results-[v,...]
 *
 * Extensions (each answers e-[Unknown command: ...] when its callback or
 * buffer is not configured, exactly like the reference firmware):
 *
 *   model load N%   -> m-[Expecting N bytes]     then  model HEX% ... -> m-model-load-done m-model-[MODEL]
 *   arena%          -> m-arena-used-N  m-arena-size-N
 *   input-format%   -> m-input-format-[dtype=int8,shape=1x49x10x1,bytes=490]
 *
 * Every answer ends with m-ready; errors are e-[MESSAGE]. Lines end with \r\n.
 *
 * `infer` copies the input once (set_input), runs W + N inferences and stamps
 * the N timed ones; because TFLite Micro reuses the input tensor's arena memory
 * for later activations, m-results comes from one more, untimed inference on a
 * fresh copy of the input.
 */
#ifndef TH_PROTOCOL_H
#define TH_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Board callbacks. Functions returning `const char *` return NULL on success or
 * a short error message (printed as e-[MESSAGE]). */
typedef struct th_board_ops {
    /* Required. */
    void (*write)(void *user, const char *text, size_t len);
    uint32_t (*timestamp_us)(void *user);                    /* free-running microsecond counter */
    const char *(*set_input)(void *user, const uint8_t *data, size_t len);
    const char *(*invoke)(void *user);                       /* one inference */
    size_t (*output_count)(void *user);
    float (*output_value)(void *user, size_t index);         /* dequantized output */
    const char *(*model_id)(void *user);                     /* text of m-model-[...] */
    /* Optional extensions: NULL disables the command. */
    const char *(*load_model)(void *user, const uint8_t *model, size_t len);
    size_t (*arena_used)(void *user);
    const char *(*input_format)(void *user);
} th_board_ops;

typedef struct th_protocol_config {
    const th_board_ops *ops;
    void *user;                 /* passed to every callback */
    const char *vendor;         /* m-name-dut-[vendor] */
    const char *firmware;       /* m-profile-[firmware] */
    char *cmd_buf;              /* command accumulator, cmd_cap bytes (>= 2) */
    size_t cmd_cap;
    uint8_t *input_buf;         /* `db` data, input_cap bytes */
    size_t input_cap;
    uint8_t *model_buf;         /* `model` data; NULL disables the extension */
    size_t model_cap;
    size_t arena_size;          /* reported by `arena` */
} th_protocol_config;

typedef struct th_protocol {
    th_protocol_config cfg;
    size_t cmd_len;
    int cmd_overflow;
    size_t input_size, input_pos;
    size_t model_size, model_pos;
    int have_results;
} th_protocol;

/* Set up the parser; the config is copied, the buffers are borrowed. */
void th_protocol_init(th_protocol *p, const th_protocol_config *cfg);

/* Print the boot banner (m-timestamp-mode-performance, m-init-done, m-ready). */
void th_protocol_boot(th_protocol *p);

/* Feed received bytes; each '%' dispatches the command accumulated so far.
 * '\r' and '\n' are ignored so that terminals may send line breaks. */
void th_protocol_feed(th_protocol *p, const uint8_t *data, size_t len);

/* Format `value` with 6 decimals into buf (no printf float support needed);
 * returns the length written, at most 31 characters plus the terminator. */
size_t th_protocol_format_float(float value, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* TH_PROTOCOL_H */
