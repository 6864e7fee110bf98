#pragma once

// gtest glue every integration test shares.

#include <gtest/gtest.h>

#include "test/integration/kubelet_driver.h"

// Asserts a CRI call succeeded, printing its code and message if not.
#define ASSERT_RPC_OK(expr)                                                                       \
  do {                                                                                            \
    const grpc::Status wp_status_ = (expr);                                                       \
    ASSERT_TRUE(wp_status_.ok()) << #expr                                                         \
                                 << " failed: " << ::warmpool::testing::StatusString(wp_status_); \
  } while (0)

// In a fixture's SetUp: fills `out` (a TestBedEnv) from the harness's
// environment, or skips the test, or fails it when WP_TEST_REQUIRE_CONTAINERD=1
// (CI), saying what to do.
#define WP_REQUIRE_TEST_BED(out)                                                           \
  do {                                                                                     \
    auto wp_env_ = ::warmpool::testing::TestBedEnv::FromEnvironment();                     \
    if (!wp_env_) {                                                                        \
      if (::warmpool::testing::TestBedEnv::Required()) {                                   \
        FAIL() << "WP_TEST_CONTAINERD_SOCK is not set but WP_TEST_REQUIRE_CONTAINERD=1: "  \
                  "start the test bed with test/harness/containerd.sh start DIR and "      \
                  "source DIR/env";                                                        \
      }                                                                                    \
      GTEST_SKIP() << "no test containerd (WP_TEST_CONTAINERD_SOCK unset); run through "   \
                      "the harness (test/harness/containerd.sh) to run integration tests"; \
    }                                                                                      \
    out = *wp_env_;                                                                        \
  } while (0)
