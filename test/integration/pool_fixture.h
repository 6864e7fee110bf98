#pragma once

// The fixture of the integration tests that run one warmpoold with pools on
// the test bed (handoff, app_handoff, late_network, observability, ...):
//
//   SetUp     a temp dir /tmp/<prefix>-XXXXXX, a token for the test's names,
//             and a pool cgroup parent of its own below the bed's parent
//             (so the bed's leak check sees what a test leaves);
//   StartDaemon  warmpoold against the bed's containerd with the test's
//             [daemon] lines and pool tables, a kubelet driver against
//             warmpoold and an admin client;
//   TearDown  the pods cleaned up (straight against containerd), the pools
//             drained by a reload without them, warmpoold stopped, and the
//             pool cgroups and the temp dir removed.
//
// Failures in TearDown are test failures: a pool that does not drain is a
// leak. A test that needs more (systemd units, a CNI dir) adds it in its own
// SetUp/TearDown around these.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "test/integration/kubelet_driver.h"
#include "test/integration/pool_support.h"
#include "test/integration/warmpoold_process.h"

namespace warmpool::testing {

// What a kubelet on the test bed uses against warmpoold's `socket`: pods
// under the bed's cgroup parent, the bed's app image, files in `work_dir`,
// cleanup straight against containerd.
KubeletDriver::Options BedDriverOptions(const TestBedEnv& env, const std::filesystem::path& socket,
                                        const std::filesystem::path& work_dir);

class PoolBedTest : public ::testing::Test {
 protected:
  // `prefix` names the temp dir: /tmp/<prefix>-XXXXXX.
  explicit PoolBedTest(std::string prefix) : prefix_(std::move(prefix)) {}

  // Derived SetUps call this first and return when it skipped or failed:
  //   PoolBedTest::SetUp(); if (IsSkipped() || HasFatalFailure()) return;
  void SetUp() override;
  void TearDown() override;

  // Starts warmpoold: its [daemon] table gets `pool_cgroup_parent` (this
  // test's) and `daemon_config` (more lines, "" for none); `pools` (pool
  // tables) follows it. Then driver_ and admin_ are made.
  void StartDaemon(const std::string& pools, const std::string& daemon_config = "");
  // The driver's options: pods under the bed's cgroup parent, cleanup
  // straight against containerd. Override to change them.
  virtual KubeletDriver::Options DriverOptions() const;
  // Cleans up the pods, drains the pools, stops warmpoold. Idempotent;
  // TearDown calls it.
  void StopDaemon();

  // Through the admin API; empty when the call fails.
  std::vector<adminpb::Entry> EntryList() const;
  std::vector<adminpb::Entry> Frozen() const;
  std::set<std::string> FrozenSandboxes() const;

  // A pod of this test: `name`-<token>, labelled with the token, the test
  // app with no init time.
  PodSpec Pod(const std::string& name) const;

  TestBedEnv env_;
  std::filesystem::path dir_;
  std::string token_;
  std::string pool_parent_;  // a cgroupfs path, or a slice name (systemd driver)
  std::unique_ptr<WarmpooldProcess> daemon_;
  std::unique_ptr<KubeletDriver> driver_;
  std::unique_ptr<AdminClient> admin_;

 private:
  const std::string prefix_;
};

}  // namespace warmpool::testing
