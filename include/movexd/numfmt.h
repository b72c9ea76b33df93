/* numfmt.h - ECMAScript Number::toString for doubles.
 *
 * The checksum hashes numbers exactly as JavaScript prints them, and the
 * wire uses the same text, so a C server and a JS client agree byte for
 * byte: shortest round-trip digits, plain integers up to 21 digits, fixed
 * notation down to 1e-7, exponent form ("1e+21", "1.5e-7") outside that;
 * -0 prints as "0". The caller never passes NaN or infinities (the state
 * holds only finite numbers).
 */
#ifndef MOVEXD_NUMFMT_H
#define MOVEXD_NUMFMT_H

#include <stddef.h>

#define MX_NUMFMT_MAX 32 /* enough for any finite double, with NUL */

/* Writes the text and a NUL into out; returns its length (without NUL). */
size_t mx_numfmt(double d, char out[MX_NUMFMT_MAX]);

/* The decimal digits of v into out (no NUL); returns how many (1..20). */
size_t mx_u64_digits(unsigned long long v, char out[20]);

#endif
