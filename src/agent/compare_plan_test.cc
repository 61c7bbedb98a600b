#include "agent/compare_plan.h"

#include <gtest/gtest.h>

#include "agent/run_policy.h"
#include "common/crypto.h"

namespace ds {
namespace {

using Mode = ComparePlan::Mode;

// A scan of `n` files a0000, a0001, ...; `hashed`: the entries it hashed.
ScanResult Scan(size_t n, std::vector<uint32_t> hashed = {}, std::vector<uint32_t> by_hook = {}) {
  ScanResult scan;
  Sha256Digest sha{};
  for (size_t i = 0; i < n; ++i) {
    char name[16];
    snprintf(name, sizeof(name), "a%05zu", i);
    EXPECT_TRUE(scan.files.Add(name, i, 1, sha));
  }
  scan.hashed = std::move(hashed);
  scan.read_by_hook = std::move(by_hook);
  return scan;
}

protocol::UploadInstruction Upload(std::string path, std::string key) {
  protocol::UploadInstruction u;
  u.path = std::move(path);
  u.key = std::move(key);
  u.reason = "new";
  return u;
}

protocol::CompareResponse Planning(const protocol::CompareRequest& req) {
  protocol::CompareResponse resp;
  for (const auto& e : req.files) resp.upload.push_back(Upload(e.path, "p/" + e.path));
  return resp;
}

// Sends the probe and answers that the index holds the base manifest.
void AnswerProbeWithBaseMatch(ComparePlan& plan) {
  (void)plan.Next("r", "command");
  protocol::CompareResponse base;
  base.base_match = true;
  plan.OnAnswer(std::move(base));
}

TEST(ComparePlanTest, ProbeMatchedEndsThePlanEmpty) {
  ScanResult scan = Scan(3);
  ComparePlan plan(scan, {"p", "digest", "base", true});
  protocol::CompareRequest probe = plan.Next("r", "command");
  EXPECT_EQ(probe.manifest_digest, "digest");
  EXPECT_EQ(probe.base_digest, "base");
  EXPECT_TRUE(probe.files.empty());
  EXPECT_FALSE(probe.last);
  protocol::CompareResponse match;
  match.manifest_match = true;
  plan.OnAnswer(std::move(match));
  EXPECT_TRUE(plan.done());
  EXPECT_TRUE(plan.matched());
  plan.Seal();
  EXPECT_EQ(plan.size(), 0u);
}

TEST(ComparePlanTest, WholeManifestGoesInBatchesAndPlansCompactly) {
  ScanResult scan = Scan(kCompareBatch + 10);
  ComparePlan plan(scan, {"p", "d", "", /*send_digest=*/false});
  EXPECT_EQ(plan.mode(), Mode::kWhole);
  protocol::CompareRequest first = plan.Next("r", "command");
  EXPECT_EQ(first.files.size(), kCompareBatch);
  EXPECT_FALSE(first.last);
  plan.OnAnswer(Planning(first));
  protocol::CompareRequest second = plan.Next("r", "command");
  EXPECT_EQ(second.files.size(), 10u);
  EXPECT_TRUE(second.last);
  EXPECT_EQ(second.manifest_digest, "");  // a scan that skipped files sends no digest
  plan.OnAnswer(Planning(second));
  ASSERT_TRUE(plan.done());
  plan.Seal();
  EXPECT_EQ(plan.size(), kCompareBatch + 10);
  EXPECT_EQ(plan.Instruction(3).key, "p/a00003");
  EXPECT_TRUE(plan.AnyDirectWrite());
  EXPECT_EQ(plan.SentUnplanned(), std::nullopt);  // the caller walks the manifest itself
}

TEST(ComparePlanTest, BaseMatchSendsOnlyTheDeltaAndBaseMovedSendsEverything) {
  ScanResult scan = Scan(10, /*hashed=*/{2, 7});
  ComparePlan plan(scan, {"p", "d", "base", true});
  AnswerProbeWithBaseMatch(plan);
  ASSERT_EQ(plan.mode(), Mode::kDelta);
  protocol::CompareRequest delta = plan.Next("r", "command");
  ASSERT_EQ(delta.files.size(), 2u);
  EXPECT_EQ(delta.files[1].path, "a00007");
  EXPECT_EQ(delta.base_digest, "base");
  EXPECT_TRUE(delta.last);

  plan.OnBaseMoved();
  EXPECT_EQ(plan.mode(), Mode::kWhole);
  protocol::CompareRequest whole = plan.Next("r", "command");
  EXPECT_EQ(whole.files.size(), 10u);
  EXPECT_TRUE(whole.base_digest.empty());
}

TEST(ComparePlanTest, DeltaRemembersWhatTheServerDidNotPlan) {
  ScanResult scan = Scan(10, {2, 7});
  ComparePlan plan(scan, {"p", "d", "base", true});
  AnswerProbeWithBaseMatch(plan);
  (void)plan.Next("r", "command");  // the delta
  protocol::CompareResponse one;
  one.upload.push_back(Upload("a00007", "p/a00007"));
  plan.OnAnswer(std::move(one));
  plan.Seal();
  EXPECT_EQ(plan.SentUnplanned(), std::vector<size_t>{2});
  EXPECT_TRUE(plan.IsPlanned(7));
  EXPECT_FALSE(plan.IsPlanned(2));
}

TEST(ComparePlanTest, AfterAFirstSyncCopiedOnlyTheRestGoesWithTheDigestLast) {
  ScanResult scan = Scan(5, /*hashed=*/{0, 1, 2, 3, 4}, /*by_hook=*/{0, 1, 3});
  ComparePlan plan(scan, {"p", "d", "", true, /*streamed=*/true, /*first_sync=*/true});
  EXPECT_EQ(plan.mode(), Mode::kRest);
  protocol::CompareRequest rest = plan.Next("r", "command");
  ASSERT_EQ(rest.files.size(), 2u);
  EXPECT_EQ(rest.files[0].path, "a00002");
  EXPECT_EQ(rest.manifest_digest, "d");
  EXPECT_TRUE(rest.last);
}

TEST(ComparePlanTest, AnInstructionSayingMoreIsKeptWhole) {
  ScanResult scan = Scan(2);
  ComparePlan plan(scan, {"p", "d", "", false});
  protocol::CompareRequest req = plan.Next("r", "command");
  protocol::CompareResponse resp;
  protocol::UploadInstruction granted = Upload("a00001", "p/a00001");
  granted.url = "https://blob/sas";
  resp.upload.push_back(granted);
  resp.upload.push_back(Upload("elsewhere", "p/elsewhere"));
  plan.OnAnswer(std::move(resp));
  plan.Seal();
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan.Instruction(0).url, "https://blob/sas");
  EXPECT_EQ(plan.entry(1), ComparePlan::kNotInManifest);
  EXPECT_EQ(plan.Instruction(1).path, "elsewhere");
}

TEST(RunPolicyTest, CopiesWhileScanningOnlyWhereStorageAndServerAllow) {
  PolicyInputs in;
  in.can_connect = true;
  in.agent_writes = true;
  EXPECT_TRUE(WantsOpeningCompare(in));
  OpeningAnswer empty{true, false, true, true};
  EXPECT_EQ(DecidePolicy(in, empty).copy, CopyMode::kFirstSync);
  OpeningAnswer holds{true, false, false, true};
  EXPECT_EQ(DecidePolicy(in, holds).copy, CopyMode::kOff);
  OpeningAnswer gone{false, true, false, false};
  RunPolicy offline = DecidePolicy(in, gone);
  EXPECT_EQ(offline.copy, CopyMode::kOff);
  EXPECT_EQ(offline.compare_attempts, 1);
  EXPECT_TRUE(offline.offline_allowed);

  in.have_manifest = true;
  EXPECT_FALSE(WantsOpeningCompare(in));
  EXPECT_EQ(DecidePolicy(in, std::nullopt).copy, CopyMode::kOff);  // cannot stage unnamed
  in.stages_unnamed = true;
  EXPECT_EQ(DecidePolicy(in, std::nullopt).copy, CopyMode::kDelta);
  in.copy_option = false;
  EXPECT_EQ(DecidePolicy(in, std::nullopt).copy, CopyMode::kOff);
}

TEST(RunPolicyTest, ServerKnownDownGoesOfflineAtOnceWithoutCopying) {
  PolicyInputs in;
  in.can_connect = true;
  in.server_known_down = true;
  in.have_manifest = true;
  in.stages_unnamed = true;
  EXPECT_FALSE(WantsOpeningCompare(in));
  RunPolicy p = DecidePolicy(in, std::nullopt);
  EXPECT_EQ(p.copy, CopyMode::kOff);
  EXPECT_EQ(p.compare_attempts, 1);
  EXPECT_FALSE(p.offline_allowed);  // object storage: no upload without the server's grant
}

}  // namespace
}  // namespace ds
