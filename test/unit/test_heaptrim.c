/* Unit tests for heaptrim.c: the heap is trimmed once a storm of
 * connections is over - after at least MX_HEAPTRIM_CHURN opened or closed
 * since the last trim, at the first tick with none since the tick before -
 * and not during the storm, nor after a few connections. */
#include <check.h>

#include "movexd/heaptrim.h"

static void churn(int n)
{
    for (int i = 0; i < n; i++)
        mx_heaptrim_churn();
}

/* whatever earlier tests left: two ticks end it */
static void settle(void)
{
    mx_heaptrim_tick();
    mx_heaptrim_tick();
}

START_TEST(trims_once_after_a_storm_is_over)
{
    settle();
    uint64_t t0 = mx_heaptrim_count();
    /* a storm over three ticks: no trim while connections keep coming */
    churn(MX_HEAPTRIM_CHURN);
    ck_assert_int_eq(mx_heaptrim_tick(), 0);
    churn(10);
    ck_assert_int_eq(mx_heaptrim_tick(), 0);
    /* the first quiet tick trims, once */
    ck_assert_int_eq(mx_heaptrim_tick(), 1);
    ck_assert_uint_eq(mx_heaptrim_count(), t0 + 1);
    ck_assert_int_eq(mx_heaptrim_tick(), 0);
    ck_assert_int_eq(mx_heaptrim_tick(), 0);
    ck_assert_uint_eq(mx_heaptrim_count(), t0 + 1);
}
END_TEST

START_TEST(few_connections_never_trim)
{
    settle();
    uint64_t t0 = mx_heaptrim_count();
    for (int round = 0; round < 5; round++) {
        churn(MX_HEAPTRIM_CHURN / 8); /* 5 x 8 < 64 */
        ck_assert_int_eq(mx_heaptrim_tick(), 0);
        ck_assert_int_eq(mx_heaptrim_tick(), 0);
    }
    /* ...until they add up to a storm's worth since the last trim */
    churn(MX_HEAPTRIM_CHURN);
    ck_assert_int_eq(mx_heaptrim_tick(), 0);
    ck_assert_int_eq(mx_heaptrim_tick(), 1);
    ck_assert_uint_eq(mx_heaptrim_count(), t0 + 1);
}
END_TEST

Suite *mx_suite_heaptrim(void)
{
    Suite *s = suite_create("heaptrim");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, trims_once_after_a_storm_is_over);
    tcase_add_test(tc, few_connections_never_trim);
    suite_add_tcase(s, tc);
    return s;
}
