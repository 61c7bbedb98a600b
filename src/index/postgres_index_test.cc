// PostgreSQL-specific index tests: the migration runner (also under concurrency), the connection
// pool, error mapping and postgresql:// URLs. Behaviour every dialect shares belongs in
// index_conformance_test.cc instead. The server is the fixture's throwaway cluster.
#include "index/postgres/postgres_index.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "index/migrations.h"
#include "index/state_index.h"
#include "index/testing/index_testing.h"
#include "index/testing/postgres_fixture.h"

namespace ds {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPassword[] = "s3cret-pw";

TEST(PostgresMigrations, MirrorTheSqliteVersions) {
  ASSERT_FALSE(kPostgresMigrations.empty());
  ASSERT_EQ(kPostgresMigrations.size(), kSqliteMigrations.size());
  for (size_t i = 0; i < kPostgresMigrations.size(); ++i) {
    EXPECT_EQ(kPostgresMigrations[i].version, kSqliteMigrations[i].version);
    EXPECT_EQ(kPostgresMigrations[i].name, kSqliteMigrations[i].name);
    EXPECT_FALSE(kPostgresMigrations[i].sql.empty());
  }
}

class PostgresIndexTest : public testing::Test {
 protected:
  void SetUp() override {
    auto db = CreateTestPostgresDatabase();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = *db;
  }

  std::unique_ptr<StateIndex> Open(const PostgresPoolOptions& options = {}) {
    auto index = OpenPostgresIndex(db_.socket_url, options);
    EXPECT_TRUE(index.ok()) << index.status();
    return index.ok() ? std::move(*index) : nullptr;
  }

  std::string Query(const std::string& sql) {
    auto value = QueryTestPostgresValue(db_.name, sql);
    EXPECT_TRUE(value.ok()) << value.status();
    return value.ok() ? *value : "";
  }

  // "version:name:applied_at,..." of every recorded migration, by version.
  std::string Recorded() {
    return Query(
        "SELECT string_agg(version || ':' || name || ':' || applied_at, ',' ORDER BY version) "
        "FROM schema_migrations");
  }

  // Waits (up to 2 s) until pg_locks holds `count` locks on table runners matching `where`.
  void WaitForRunnersLocks(const std::string& where, const std::string& count) {
    for (int i = 0; i < 400 && Query(absl::StrCat("SELECT COUNT(*) FROM pg_locks WHERE ", where,
                                                  " AND relation = 'runners'::regclass")) != count;
         ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  // Another session holds table runners (ACCESS EXCLUSIVE) for ~1.5 s from the moment this
  // returns; join the thread afterwards.
  std::thread LockRunnersBriefly() {
    std::thread locker([this] {
      EXPECT_TRUE(ExecTestPostgresSql(db_.name,
                                      "BEGIN; LOCK TABLE runners IN ACCESS EXCLUSIVE MODE; "
                                      "SELECT pg_sleep(1.5); COMMIT;")
                      .ok());
    });
    WaitForRunnersLocks("granted AND mode = 'AccessExclusiveLock'", "1");
    return locker;
  }

  TestPostgresDatabase db_;
};

TEST_F(PostgresIndexTest, FreshDatabaseGetsEveryVersion) {
  std::unique_ptr<StateIndex> index = Open();
  ASSERT_NE(index, nullptr);
  auto before = index->SchemaVersion();
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(*before, 0);

  ASSERT_TRUE(index->Migrate().ok());
  auto after = index->SchemaVersion();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(*after, kPostgresMigrations.back().version);
  EXPECT_EQ(index->LatestKnownSchemaVersion(), kPostgresMigrations.back().version);

  std::string expected;
  for (const Migration& m : kPostgresMigrations) {
    absl::StrAppend(&expected, expected.empty() ? "" : ",", m.version, ":", std::string(m.name));
  }
  EXPECT_EQ(Query("SELECT string_agg(version || ':' || name, ',' ORDER BY version) "
                  "FROM schema_migrations"),
            expected);
  // Exactly the schema's tables (one list for both backends).
  EXPECT_EQ(Query("SELECT string_agg(table_name, ',' ORDER BY table_name COLLATE \"C\") "
                  "FROM information_schema.tables WHERE table_schema = 'public' "
                  "AND table_name <> 'schema_migrations'"),
            absl::StrJoin(ExpectedIndexTables(), ","));
  // Byte-order columns, whatever the database's default collation (the fixture's is ICU en-US).
  EXPECT_EQ(Query("SELECT collation_name FROM information_schema.columns "
                  "WHERE table_name = 'synced_files' AND column_name = 'path'"),
            "C");
}

TEST_F(PostgresIndexTest, MigrateTwiceIsNoOp) {
  std::unique_ptr<StateIndex> index = Open();
  ASSERT_NE(index, nullptr);
  ASSERT_TRUE(index->Migrate().ok());
  const std::string first = Recorded();
  ASSERT_FALSE(first.empty());

  ASSERT_TRUE(index->Migrate().ok());
  EXPECT_EQ(Recorded(), first);
  index.reset();
  std::unique_ptr<StateIndex> reopened = Open();
  ASSERT_NE(reopened, nullptr);
  ASSERT_TRUE(reopened->Migrate().ok());
  EXPECT_EQ(Recorded(), first);
}

TEST_F(PostgresIndexTest, ConcurrentMigrateAppliesEachVersionOnce) {
  // Servers starting together: separate indexes (pools), plus two threads sharing one.
  constexpr int kServers = 3;
  std::vector<std::unique_ptr<StateIndex>> servers;
  for (int i = 0; i < kServers; ++i) {
    servers.push_back(Open());
    ASSERT_NE(servers.back(), nullptr);
  }
  std::atomic<int> ready{0};
  std::vector<absl::Status> results(kServers + 1);
  std::vector<std::thread> threads;
  for (int i = 0; i <= kServers; ++i) {
    threads.emplace_back([&, i] {
      ++ready;
      while (ready.load() <= kServers) std::this_thread::yield();
      results[i] = servers[i % kServers]->Migrate();
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& status : results) EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(Query("SELECT COUNT(*) FROM schema_migrations"),
            std::to_string(kPostgresMigrations.size()));
  EXPECT_EQ(Query("SELECT COUNT(DISTINCT version) FROM schema_migrations"),
            std::to_string(kPostgresMigrations.size()));
  auto version = servers[0]->SchemaVersion();
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(*version, servers[0]->LatestKnownSchemaVersion());
}

TEST_F(PostgresIndexTest, RefusesNewerSchema) {
  std::unique_ptr<StateIndex> index = Open();
  ASSERT_NE(index, nullptr);
  ASSERT_TRUE(index->Migrate().ok());
  ASSERT_TRUE(ExecTestPostgresSql(db_.name,
                                  "INSERT INTO schema_migrations (version, name, applied_at) "
                                  "VALUES (999, '0999_future.sql', 0)")
                  .ok());
  const absl::Status status = index->Migrate();
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("999"));
  EXPECT_THAT(status.message(),
              HasSubstr(absl::StrCat("(", index->LatestKnownSchemaVersion(), ")")));
  auto version = index->SchemaVersion();
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(*version, 999);
}

TEST_F(PostgresIndexTest, OpensBothUrlSchemesOverTcp) {
  auto index = OpenStateIndex(db_.url);  // postgresql://test@127.0.0.1:PORT/t_N
  ASSERT_TRUE(index.ok()) << index.status();
  ASSERT_TRUE((*index)->Migrate().ok());
  ASSERT_TRUE((*index)->CreateAdminToken("t", "admin", "hash-1", 1).ok());

  const std::string short_scheme = "postgres" + db_.url.substr(db_.url.find(':'));
  auto again = OpenStateIndex(short_scheme);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE((*again)->Ping().ok());
  EXPECT_TRUE((*again)->FindAdminToken("hash-1").ok());
  auto size = (*again)->SizeBytes();
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_GT(*size, 0);
}

TEST(PostgresIndex, UnreachableServerIsUnavailableWithoutPassword) {
  const std::string url =
      absl::StrCat("postgresql://test:", kPassword, "@127.0.0.1:", FreeLocalPort(), "/datasync");
  auto index = OpenStateIndex(url);  // connects lazily
  ASSERT_TRUE(index.ok()) << index.status();
  const absl::Status ping = (*index)->Ping();
  EXPECT_TRUE(absl::IsUnavailable(ping)) << ping;
  EXPECT_THAT(ping.message(), HasSubstr("127.0.0.1"));
  EXPECT_THAT(ping.message(), Not(HasSubstr(kPassword)));
  const absl::Status migrate = (*index)->Migrate();
  EXPECT_TRUE(absl::IsUnavailable(migrate)) << migrate;
  EXPECT_THAT(migrate.message(), Not(HasSubstr(kPassword)));
}

TEST(PostgresIndex, MalformedUrlIsInvalidArgumentWithoutPassword) {
  for (const std::string& url :
       {absl::StrCat("postgresql://test:", kPassword, "@127.0.0.1/db?no_such_option=1"),
        absl::StrCat("postgres://test:", kPassword, "%zz@127.0.0.1/db")}) {
    auto index = OpenStateIndex(url);
    EXPECT_TRUE(absl::IsInvalidArgument(index.status())) << index.status();
    EXPECT_THAT(index.status().message(), Not(HasSubstr(kPassword)));
  }
}

TEST(RedactIndexUrl, HidesPasswordsOnly) {
  EXPECT_EQ(RedactIndexUrl("postgresql://ds:s3cret@db.example:5432/datasync"),
            "postgresql://ds:****@db.example:5432/datasync");
  EXPECT_EQ(RedactIndexUrl("postgres://ds:p%40ss@db/x?sslmode=require&password=again"),
            "postgres://ds:****@db/x?sslmode=require&password=****");
  EXPECT_EQ(RedactIndexUrl("postgresql:///x?host=/tmp&password=s3cret&user=ds"),
            "postgresql:///x?host=/tmp&password=****&user=ds");
  EXPECT_EQ(RedactIndexUrl("postgresql://ds@db/datasync"), "postgresql://ds@db/datasync");
  EXPECT_EQ(RedactIndexUrl("sqlite:/var/lib/datasync/index.db"),
            "sqlite:/var/lib/datasync/index.db");
}

TEST_F(PostgresIndexTest, LostConnectionsAreReplaced) {
  std::unique_ptr<StateIndex> index = Open();
  ASSERT_NE(index, nullptr);
  ASSERT_TRUE(index->Migrate().ok());
  ASSERT_TRUE(index->CreateAdminToken("t", "admin", "hash-1", 1).ok());
  // Several pooled connections, all idle afterwards.
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) EXPECT_TRUE(index->Ping().ok());
    });
  }
  for (std::thread& t : threads) t.join();
  // A server restart or a DBA cuts every connection of the pool while it is idle.
  ASSERT_EQ(Query(absl::StrCat("SELECT COUNT(pg_terminate_backend(pid)) > 0 FROM pg_stat_activity "
                               "WHERE datname = '",
                               db_.name, "' AND pid <> pg_backend_pid()")),
            "t");
  auto count = index->CountAdminTokens();
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count, 1);
  EXPECT_TRUE(index->CreateAdminToken("u", "viewer", "hash-2", 2).ok());
  // A unique violation names the constraint but not the row's values.
  const absl::Status dup = index->CreateAdminToken("v", "viewer", "hash-2", 3).status();
  EXPECT_TRUE(absl::IsAlreadyExists(dup)) << dup;
  EXPECT_THAT(dup.message(), HasSubstr("admin_tokens_token_hash_key"));
  EXPECT_THAT(dup.message(), Not(HasSubstr("hash-2")));
}

TEST_F(PostgresIndexTest, PoolIsBoundedAndSharedByThreads) {
  PostgresPoolOptions options;
  options.max_connections = 2;
  std::unique_ptr<StateIndex> index = Open(options);
  ASSERT_NE(index, nullptr);
  ASSERT_TRUE(index->Migrate().ok());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        if (!index->Ping().ok()) ++failures;
        if (!index->CreateAdminToken("t", "admin", absl::StrCat("h-", t, "-", i), i).ok()) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  const std::string open =
      Query(absl::StrCat("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = '", db_.name,
                         "' AND application_name = 'datasync'"));
  EXPECT_TRUE(open == "1" || open == "2") << open << " connections open";
}

TEST_F(PostgresIndexTest, LockWaitsAndBusyPoolAreUnavailable) {
  ASSERT_TRUE(Open()->Migrate().ok());
  std::thread locker = LockRunnersBriefly();

  PostgresPoolOptions impatient;
  impatient.lock_timeout = std::chrono::milliseconds(100);
  std::unique_ptr<StateIndex> a = Open(impatient);
  const absl::Status timed_out = a->ListRunners().status();
  EXPECT_TRUE(absl::IsUnavailable(timed_out)) << timed_out;

  PostgresPoolOptions one;
  one.max_connections = 1;
  one.acquire_timeout = std::chrono::milliseconds(100);
  std::unique_ptr<StateIndex> b = Open(one);
  ASSERT_TRUE(b->Ping().ok());                                      // opens the only connection
  std::thread waiter([&] { EXPECT_TRUE(b->ListRunners().ok()); });  // holds it until the unlock
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const absl::Status busy = b->Ping();
  EXPECT_TRUE(absl::IsUnavailable(busy)) << busy;
  EXPECT_THAT(busy.message(), HasSubstr("busy"));
  waiter.join();
  locker.join();
  EXPECT_TRUE(b->Ping().ok());
}

// Bulk calls (listing runners, a compare batch's lookups) never take the last two connections:
// with bulk calls holding all they may, short calls still get one at once.
TEST_F(PostgresIndexTest, BulkCallsLeaveConnectionsToShortCalls) {
  ASSERT_TRUE(Open()->Migrate().ok());
  std::thread locker = LockRunnersBriefly();

  PostgresPoolOptions three;
  three.max_connections = 3;  // one for bulk calls, two kept for short ones
  three.acquire_timeout = std::chrono::milliseconds(200);
  std::unique_ptr<StateIndex> index = Open(three);
  std::thread bulk([&] { EXPECT_TRUE(index->ListRunners().ok()); });  // waits for the lock
  WaitForRunnersLocks("NOT granted", "1");
  const absl::Status second_bulk = index->ListRunners().status();
  EXPECT_TRUE(absl::IsUnavailable(second_bulk)) << second_bulk;
  EXPECT_THAT(second_bulk.message(), HasSubstr("busy"));
  EXPECT_TRUE(index->Ping().ok());
  auto tokens = index->CountAdminTokens();  // two short calls at once: both reserved connections
  EXPECT_TRUE(tokens.ok()) << tokens.status();
  bulk.join();
  locker.join();
  EXPECT_TRUE(index->ListRunners().ok());
}

TEST_F(PostgresIndexTest, RefusesBytesPostgresCannotStore) {
  // SQLite stores any bytes; PostgreSQL text holds neither NUL nor invalid UTF-8. Paths from the
  // wire are validated long before (no NUL, UTF-8), so this is a guard, not a feature.
  std::unique_ptr<StateIndex> index = Open();
  ASSERT_NE(index, nullptr);
  ASSERT_TRUE(index->Migrate().ok());
  auto runner = index->RegisterRunner({"pc1", "h", "linux", "m", "1"}, "enr-1", "s", 1);
  ASSERT_TRUE(runner.ok()) << runner.status();
  ASSERT_TRUE(index->TransitionRunner(runner->id, "pending", "approved", 2).ok());
  protocol::JobSpec spec;
  spec.name = "job";
  auto job = index->PutJob(runner->id, spec, false, 3);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(index->BeginRun("run-1", runner->id, job->spec.id, "schedule", 4).ok());
  RunFile bad_utf8;
  bad_utf8.path = "caf\xe9.txt";  // Latin-1
  bad_utf8.planned_reason = "new";
  const absl::Status utf8 = index->RecordPlanned("run-1", {bad_utf8}, 1, 1);
  EXPECT_TRUE(absl::IsInvalidArgument(utf8)) << utf8;
  RunFile nul = bad_utf8;
  nul.path = std::string("a\0b", 3);
  EXPECT_TRUE(absl::IsInvalidArgument(index->RecordPlanned("run-1", {nul}, 1, 1)));
  EXPECT_TRUE(absl::IsUnimplemented(index->BackupTo("/tmp/never-written.sqlite")));
}

}  // namespace
}  // namespace ds
