/* digest.h - the protocol's state checksum (PROTOCOL.md "Checksum").
 *
 * D(value) is BLAKE2b-128 over a tagged encoding; containers hash their
 * children's 16-byte digests, so each mx_val caches its digest (and its
 * serialized size) and only nodes marked not fresh are recomputed.
 */
#ifndef MOVEXD_DIGEST_H
#define MOVEXD_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "movexd/json.h"

#define MX_CHECKSUM_HEX 33 /* 32 hex characters + NUL */

/* Recompute dig and jsize of every non-fresh node under v (children first;
 * fresh subtrees are skipped), then mark them fresh. Returns 0, or -1 on
 * allocation failure (the tree stays valid but not fresh). */
int mx_digest_refresh(mx_val *v);

/* Refresh then copy the root digest into out. */
int mx_digest_of(mx_val *v, uint8_t out[MX_DIGEST_LEN]);

/* D(string) for a key or string value. */
void mx_digest_string(const char *s, size_t len, uint8_t out[MX_DIGEST_LEN]);

/* Digest of a jansson value, uncached (tests, tools, validation). Returns 0
 * or -1 on a non-finite number. */
int mx_digest_jansson(const json_t *j, uint8_t out[MX_DIGEST_LEN]);

/* 32 lowercase hex characters + NUL. */
void mx_digest_hex(const uint8_t dig[MX_DIGEST_LEN], char out[MX_CHECKSUM_HEX]);
/* Parses 32 hex characters (either case); returns 0 or -1. */
int mx_digest_parse_hex(const char *hex, size_t len, uint8_t out[MX_DIGEST_LEN]);

#endif
