#include "protocol/messages.h"

#include <string>

#include "gtest/gtest.h"

namespace ds::protocol {
namespace {

constexpr char kSha[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

// Encodes, decodes, and checks the decoded value encodes to the same JSON.
template <typename T>
T RoundTrip(const T& value) {
  std::string json = Encode(value);
  absl::StatusOr<T> decoded = Decode<T>(json);
  EXPECT_TRUE(decoded.ok()) << decoded.status() << "\n" << json;
  if (!decoded.ok()) return T{};
  EXPECT_EQ(Encode(*decoded), json);
  return *decoded;
}

TEST(MessagesTest, CompareRequestRoundTrip) {
  CompareRequest req;
  req.run_id = "123e4567-e89b-42d3-a456-426614174000";
  req.trigger = "schedule";
  req.files.push_back(
      ManifestEntry{"Übersicht/μ.dat", 1ull << 40, 1'700'000'000'123'456'789, kSha});
  req.files.push_back(ManifestEntry{"with space/empty", 0, 0, kSha});
  req.last = false;
  req.total_files = 2;
  req.total_bytes = 1ull << 40;

  CompareRequest got = RoundTrip(req);
  EXPECT_EQ(got.run_id, req.run_id);
  EXPECT_EQ(got.trigger, "schedule");
  ASSERT_EQ(got.files.size(), 2u);
  EXPECT_EQ(got.files[0].path, "Übersicht/μ.dat");
  EXPECT_EQ(got.files[0].size, 1ull << 40);
  EXPECT_EQ(got.files[0].mtime_ns, 1'700'000'000'123'456'789);
  EXPECT_EQ(got.files[0].sha256, kSha);
  EXPECT_EQ(got.files[1].size, 0u);
  EXPECT_FALSE(got.last);
  EXPECT_EQ(got.total_files, 2u);
  EXPECT_EQ(got.total_bytes, 1ull << 40);
}

TEST(MessagesTest, CompareRequestOptionalFieldsDefault) {
  absl::StatusOr<CompareRequest> got = Decode<CompareRequest>(R"({"run_id":"r","files":[]})");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->last);
  EXPECT_EQ(got->total_files, 0u);
  EXPECT_TRUE(got->files.empty());
}

// The no-op cycle's additions are optional both ways: absent when unset, decoded when present.
TEST(MessagesTest, ManifestDigestFieldsAreOptional) {
  CompareRequest req;
  req.run_id = "r";
  EXPECT_EQ(Encode(req).find("manifest_digest"), std::string::npos);
  req.manifest_digest = kSha;
  req.last = false;
  EXPECT_EQ(RoundTrip(req).manifest_digest, kSha);
  EXPECT_EQ(Decode<CompareRequest>(R"({"run_id":"r","files":[]})")->manifest_digest, "");

  CompareResponse resp;
  EXPECT_EQ(Encode(resp).find("manifest_match"), std::string::npos);
  EXPECT_FALSE(Decode<CompareResponse>(R"({"upload":[]})")->manifest_match);
  resp.manifest_match = true;
  EXPECT_TRUE(RoundTrip(resp).manifest_match);

  // The delta compare's fields likewise.
  EXPECT_EQ(Encode(req).find("base_digest"), std::string::npos);
  req.base_digest = kSha;
  EXPECT_EQ(RoundTrip(req).base_digest, kSha);
  EXPECT_EQ(Encode(resp).find("base_match"), std::string::npos);
  EXPECT_FALSE(RoundTrip(resp).base_match);
  resp.base_match = true;
  EXPECT_TRUE(RoundTrip(resp).base_match);
}

TEST(MessagesTest, CompleteRequestRoundTrip) {
  CompleteRequest req;
  FileResult ok{"a.dat", "uploaded", 10, 20, kSha, "", "a.dat.v1", 30};
  FileResult failed{"b.dat", "failed", 1, 2, "", "permission denied", "", 0};
  req.results = {ok, failed};
  req.final = true;
  req.interrupted = true;
  req.error = "agent stopping";

  CompleteRequest got = RoundTrip(req);
  ASSERT_EQ(got.results.size(), 2u);
  EXPECT_EQ(got.results[0].path, "a.dat");
  EXPECT_EQ(got.results[0].status, "uploaded");
  EXPECT_EQ(got.results[0].size, 10u);
  EXPECT_EQ(got.results[0].mtime_ns, 20);
  EXPECT_EQ(got.results[0].sha256, kSha);
  EXPECT_EQ(got.results[0].kept_version, "a.dat.v1");
  EXPECT_EQ(got.results[0].duration_ms, 30);
  EXPECT_EQ(got.results[0].error, "");
  EXPECT_EQ(got.results[1].error, "permission denied");
  EXPECT_TRUE(got.final);
  EXPECT_TRUE(got.interrupted);
  EXPECT_EQ(got.error, "agent stopping");

  CompleteRequest empty = RoundTrip(CompleteRequest{});
  EXPECT_TRUE(empty.results.empty());
  EXPECT_FALSE(empty.final);
  EXPECT_EQ(Encode(CompleteRequest{}).find("\"error\""), std::string::npos);
}

TEST(MessagesTest, UploadInstructionsForDirectoryStorageCarryNoGrantFields) {
  CompareResponse resp;
  resp.run_id = "r";
  resp.storage_url = "file:///srv/share";
  resp.upload.push_back(UploadInstruction{"a.dat", "lab/a.dat", "new"});
  const std::string json = Encode(resp);
  EXPECT_EQ(json.find("url\":\"h"), std::string::npos) << json;
  EXPECT_EQ(json.find("expires_at_ms"), std::string::npos) << json;
  EXPECT_EQ(json.find("already_present"), std::string::npos) << json;
  CompareResponse got = RoundTrip(resp);
  ASSERT_EQ(got.upload.size(), 1u);
  EXPECT_TRUE(got.upload[0].url.empty());
  EXPECT_FALSE(got.upload[0].already_present);
}

TEST(MessagesTest, UploadInstructionWithGrantRoundTrip) {
  UploadInstruction u{"a.dat", "lab/a.dat", "changed"};
  u.url = "https://acct.blob.core.windows.net/c/lab/a.dat?sv=2021-08-06&sp=cw&sig=x";
  u.expires_at_ms = 1'700'000'000'000;
  u.kept_version = ".datasync/versions/lab/a.dat/20261101T000000Z-ba7816bf8f01";
  UploadInstruction got = RoundTrip(u);
  EXPECT_EQ(got.url, u.url);
  EXPECT_EQ(got.expires_at_ms, u.expires_at_ms);
  EXPECT_EQ(got.kept_version, u.kept_version);
  EXPECT_FALSE(got.already_present);

  UploadInstruction present{"b.dat", "lab/b.dat", "new"};
  present.already_present = true;
  EXPECT_TRUE(RoundTrip(present).already_present);
}

TEST(MessagesTest, GrantRoundTrip) {
  EXPECT_EQ(RoundTrip(GrantRequest{"dir/ü.dat"}).path, "dir/ü.dat");
  GrantResponse g{"https://h/c/k?sig=s", 42, ".datasync/versions/k/v"};
  GrantResponse got = RoundTrip(g);
  EXPECT_EQ(got.url, g.url);
  EXPECT_EQ(got.expires_at_ms, 42);
  EXPECT_EQ(got.kept_version, g.kept_version);
  EXPECT_FALSE(Decode<GrantRequest>("{}").ok());
}

TEST(MessagesTest, HeartbeatResponseWithoutJobs) {
  HeartbeatResponse resp;
  resp.interval_ms = 30'000;
  resp.jobs_version = 7;
  resp.storage_url = "file:///srv/share";
  resp.commands.push_back(Command{5, "sync", "raw", "run-1"});

  std::string json = Encode(resp);
  EXPECT_EQ(json.find("\"jobs\""), std::string::npos);
  HeartbeatResponse got = RoundTrip(resp);
  EXPECT_EQ(got.interval_ms, 30'000);
  EXPECT_EQ(got.jobs_version, 7);
  EXPECT_EQ(got.storage_url, "file:///srv/share");
  EXPECT_FALSE(got.jobs.has_value());
  ASSERT_EQ(got.commands.size(), 1u);
  EXPECT_EQ(got.commands[0].id, 5);
  EXPECT_EQ(got.commands[0].type, "sync");
  EXPECT_EQ(got.commands[0].job, "raw");
  EXPECT_EQ(got.commands[0].run_id, "run-1");
}

TEST(MessagesTest, HeartbeatResponseWithJobs) {
  HeartbeatResponse resp;
  resp.jobs_version = 3;
  JobSpec job;
  job.id = 9;
  job.name = "raw";
  job.source = "D:\\Messungen";
  job.dest_prefix = "lab1/raw";
  job.includes = {"*.dat"};
  job.excludes = {"*.tmp", "~*"};
  job.interval_ms = 600'000;
  job.settle_ms = 5'000;
  job.enabled = false;
  resp.jobs = std::vector<JobSpec>{job};

  HeartbeatResponse got = RoundTrip(resp);
  ASSERT_TRUE(got.jobs.has_value());
  ASSERT_EQ(got.jobs->size(), 1u);
  const JobSpec& j = got.jobs->front();
  EXPECT_EQ(j.id, 9);
  EXPECT_EQ(j.name, "raw");
  EXPECT_EQ(j.source, "D:\\Messungen");
  EXPECT_EQ(j.dest_prefix, "lab1/raw");
  EXPECT_EQ(j.includes, std::vector<std::string>{"*.dat"});
  EXPECT_EQ(j.excludes, (std::vector<std::string>{"*.tmp", "~*"}));
  EXPECT_EQ(j.interval_ms, 600'000);
  EXPECT_EQ(j.settle_ms, 5'000);
  EXPECT_FALSE(j.enabled);

  // An empty job list is not the same as "no update".
  resp.jobs = std::vector<JobSpec>{};
  got = RoundTrip(resp);
  ASSERT_TRUE(got.jobs.has_value());
  EXPECT_TRUE(got.jobs->empty());
}

TEST(MessagesTest, NullOptionalFieldsAreDefaults) {
  absl::StatusOr<HeartbeatResponse> got =
      Decode<HeartbeatResponse>(R"({"jobs":null,"storage_url":null,"interval_ms":5})");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_FALSE(got->jobs.has_value());
  EXPECT_EQ(got->storage_url, "");
  EXPECT_EQ(got->interval_ms, 5);
}

TEST(MessagesTest, MalformedJsonIsInvalidArgument) {
  for (const char* body : {"", "{", "not json", R"({"run_id":"r","files":[})", "{'a':1}"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(Decode<CompareRequest>(body).status())) << body;
  }
}

TEST(MessagesTest, MissingRequiredFieldIsInvalidArgument) {
  EXPECT_TRUE(absl::IsInvalidArgument(Decode<CompareRequest>(R"({"files":[]})").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(Decode<CompareRequest>(R"({"run_id":"r"})").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      Decode<CompareRequest>(R"({"run_id":"r","files":[{"path":"a","size":1,"mtime_ns":2}]})")
          .status()));  // entry without sha256
  EXPECT_TRUE(absl::IsInvalidArgument(Decode<CompleteRequest>(R"({"final":true})").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      Decode<CompleteRequest>(R"({"results":[{"status":"uploaded"}]})").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(Decode<CompareRequest>("{}").status()));
}

TEST(MessagesTest, WrongTypeIsInvalidArgument) {
  for (const char* body : {
           R"({"run_id":5,"files":[]})",
           R"({"run_id":"r","files":"a.dat"})",
           R"({"run_id":"r","files":[],"last":"yes"})",
           R"({"run_id":"r","files":[{"path":"a","size":"1","mtime_ns":2,"sha256":"x"}]})",
           R"({"run_id":"r","files":[{"path":["a"],"size":1,"mtime_ns":2,"sha256":"x"}]})",
           R"({"run_id":"r","files":[{"path":"a","size":1,"mtime_ns":null,"sha256":"x"}]})",
           "[]",
       }) {
    EXPECT_TRUE(absl::IsInvalidArgument(Decode<CompareRequest>(body).status())) << body;
  }
  EXPECT_TRUE(absl::IsInvalidArgument(
      Decode<HeartbeatResponse>(R"({"jobs":[{"name":"x","source":1}]})").status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(Decode<HeartbeatResponse>(R"({"interval_ms":"60s"})").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(Decode<CompleteRequest>(R"({"results":{}})").status()));
}

TEST(MessagesTest, NumbersMustHaveTheRightTypeAndSign) {
  for (const char* body : {
           R"({"run_id":"r","files":[{"path":"a","size":-1,"mtime_ns":2,"sha256":"x"}]})",
           R"({"run_id":"r","files":[{"path":"a","size":1.9,"mtime_ns":2,"sha256":"x"}]})",
           R"({"run_id":"r","files":[{"path":"a","size":1,"mtime_ns":1e30,"sha256":"x"}]})",
       }) {
    EXPECT_TRUE(absl::IsInvalidArgument(Decode<CompareRequest>(body).status())) << body;
  }
  auto ok = Decode<CompareRequest>(
      R"({"run_id":"r","files":[{"path":"a","size":0,"mtime_ns":-5,"sha256":"x"}]})");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->files[0].mtime_ns, -5);  // negative mtimes parse; the planner rejects them
}

TEST(MessagesTest, NonObjectBodiesAreRejected) {
  for (const char* body : {"5", "null", "\"x\"", "true"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(Decode<HeartbeatRequest>(body).status())) << body;
  }
}

// Every decoder bounds depth before any recursive walk: a log record's fields 100000 deep used
// to overflow the stack in from_json (the dump of `fields`).
TEST(MessagesTest, DecodeRefusesDeepNestingBeforeWalkingIt) {
  std::string deep;
  for (int i = 0; i < 100'000; ++i) deep += R"({"a":)";
  deep += "1" + std::string(100'000, '}');
  auto batch = Decode<LogBatch>(
      R"({"records":[{"seq":1,"time_ms":1,"level":"info","message":"m","fields":)" + deep + "}]}");
  ASSERT_TRUE(absl::IsInvalidArgument(batch.status())) << batch.status();
  EXPECT_NE(batch.status().message().find("nested deeper than 32 levels"), std::string::npos);
  auto ok = Decode<LogBatch>(R"({"records":[{"seq":1,"time_ms":1,"level":"info","message":"m","fields":{"a":{"b":1}}}]})");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->records.at(0).fields_json, R"({"a":{"b":1}})");
}

}  // namespace
}  // namespace ds::protocol
