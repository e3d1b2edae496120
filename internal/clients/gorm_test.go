//go:build clients

package clients

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"
)

// gormItem is the scenario's items table as a GORM model. The key is set
// by the application: no serial column, which DSQL's sequences would make
// a poor fit.
type gormItem struct {
	ID        int    `gorm:"primaryKey;autoIncrement:false"`
	Name      string `gorm:"not null"`
	Qty       int    `gorm:"not null"`
	CreatedAt time.Time
}

func (gormItem) TableName() string { return "items" }

// gormBulk is the bulk table.
type gormBulk struct {
	ID      int    `gorm:"primaryKey;autoIncrement:false"`
	Payload string `gorm:"not null"`
}

func (gormBulk) TableName() string { return "bulk" }

// runGORM runs the scenario through GORM with its postgres driver (pgx's
// stdlib underneath), statement caching on (PrepareStmt) and error
// translation on. Its database/sql pool has one connection, so the session
// is that connection and every SET applies to every later query, as an
// application that needs session state configures it.
func runGORM(ctx context.Context, tg target) (rep report) {
	rep = report{version: "gorm " + moduleVersion("gorm.io/gorm") + ", driver/postgres " + moduleVersion("gorm.io/driver/postgres")}
	var r recorder
	defer func() { rep.steps = r.steps }()

	cfg, err := pgx.ParseConfig(tg.URL)
	if err != nil {
		r.fail(err.Error())
		return rep
	}
	cfg.BuildContextWatcherHandler = cancelRequestOnContext
	sqlDB := stdlib.OpenDB(*cfg)
	defer sqlDB.Close()
	sqlDB.SetMaxOpenConns(1)
	sqlDB.SetMaxIdleConns(1)
	sqlDB.SetConnMaxLifetime(0)
	sqlDB.SetConnMaxIdleTime(0)

	var db *gorm.DB
	r.step(ctx, "connect_tls", func(ctx context.Context) (string, error) {
		var err error
		db, err = gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{
			Logger:         logger.Discard,
			PrepareStmt:    true,
			TranslateError: true,
			// Tables in the run's schema until search_path is set.
			NamingStrategy: schema.NamingStrategy{TablePrefix: tg.Schema + "."},
		})
		if err != nil {
			db = nil
			return "", err
		}
		var info string
		err = withDriverConn(ctx, sqlDB, func(c *stdlib.Conn) error {
			nc := c.Conn().PgConn().Conn()
			tc, ok := nc.(*tls.Conn)
			if !ok {
				return fmt.Errorf("connection is %T, not TLS", nc)
			}
			info = tlsVersion(tc.ConnectionState().Version) + " verify-full"
			return nil
		})
		if err != nil {
			return "", err
		}
		// AutoMigrate runs one CREATE TABLE at a time, in autocommit.
		if err := db.WithContext(ctx).AutoMigrate(&gormItem{}, &gormBulk{}); err != nil {
			return "", fmt.Errorf("AutoMigrate: %w", err)
		}
		if !db.Migrator().HasTable(&gormItem{}) {
			return "", errors.New("AutoMigrate made no items table")
		}
		return info + ", AutoMigrate", nil
	})
	if db == nil {
		r.fail("no connection")
		return rep
	}
	qualified := db.Session(&gorm.Session{})      // names tables with the schema
	plain := func(ctx context.Context) *gorm.DB { // raw SQL on the session
		return db.WithContext(ctx)
	}

	r.step(ctx, "param_query", func(ctx context.Context) (string, error) {
		var got struct {
			Sum   int64
			Upper string
			Flag  bool
			Null  *string
		}
		err := plain(ctx).Raw("select ?::int8 + ?::int8 as sum, upper(?::text) || ' ' || ?::text as upper, ?::bool as flag, ?::text as null",
			40, 2, "dsql", "ünïcode", true, nil).Scan(&got).Error
		if err != nil {
			return "", err
		}
		var items []gormItem
		if err := qualified.WithContext(ctx).Where("id > ? AND name <> ?", 0, "x").Find(&items).Error; err != nil {
			return "", err
		}
		return "Raw with 6 parameters, Where with 2", firstErr(want("sum", got.Sum, 42), want("text", got.Upper, "DSQL ünïcode"),
			want("bool", got.Flag, true), want("null", got.Null == nil, true), want("items", len(items), 0))
	})

	r.step(ctx, "prepared_reuse", func(ctx context.Context) (string, error) {
		for i := range reuseCount {
			var n int
			if err := plain(ctx).Raw("select ?::int * 2", i).Scan(&n).Error; err != nil {
				return "", fmt.Errorf("execution %d: %w", i, err)
			}
			if n != 2*i {
				return "", fmt.Errorf("execution %d: got %d", i, n)
			}
		}
		stmts := db.ConnPool.(*gorm.PreparedStmtDB).Stmts
		if _, ok := stmts.Get("select $1::int * 2"); !ok {
			return "", fmt.Errorf("the statement is not in GORM's cache (keys %q)", stmts.Keys())
		}
		return fmt.Sprintf("PrepareStmt cache, %d executions", reuseCount), nil
	})

	r.step(ctx, "tx_commit", func(ctx context.Context) (string, error) {
		err := qualified.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			for i := 1; i <= 3; i++ {
				if err := tx.Create(&gormItem{ID: i, Name: fmt.Sprint("item ", i), Qty: i * 10}).Error; err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		var n int64
		if err := qualified.WithContext(ctx).Model(&gormItem{}).Count(&n).Error; err != nil {
			return "", err
		}
		var item gormItem
		if err := qualified.WithContext(ctx).First(&item, 2).Error; err != nil {
			return "", err
		}
		return "Transaction with 3 Creates", firstErr(want("rows", n, int64(3)), want("item 2", item.Name, "item 2"))
	})

	r.step(ctx, "tx_rollback", func(ctx context.Context) (string, error) {
		var inside int64
		errBack := errors.New("roll back")
		err := qualified.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			if err := tx.Create(&gormItem{ID: 100, Name: "rolled back", Qty: 1}).Error; err != nil {
				return err
			}
			if err := tx.Model(&gormItem{}).Count(&inside).Error; err != nil {
				return err
			}
			return errBack
		})
		if !errors.Is(err, errBack) {
			return "", fmt.Errorf("transaction: %v", err)
		}
		// And by hand: Begin, Update, Rollback.
		tx := qualified.WithContext(ctx).Begin()
		if err := tx.Model(&gormItem{ID: 1}).Update("qty", 999).Error; err != nil {
			tx.Rollback()
			return "", err
		}
		if err := tx.Rollback().Error; err != nil {
			return "", err
		}
		var n int64
		var item gormItem
		err1 := qualified.WithContext(ctx).Model(&gormItem{}).Count(&n).Error
		err2 := qualified.WithContext(ctx).First(&item, 1).Error
		return "Transaction returning an error; Begin/Rollback", firstErr(err1, err2,
			want("rows inside", inside, int64(4)), want("rows after", n, int64(3)), want("qty after", item.Qty, 10))
	})

	r.step(ctx, "error_recovery", func(ctx context.Context) (string, error) {
		err := qualified.WithContext(ctx).Create(&gormItem{ID: 1, Name: "duplicate"}).Error
		if !errors.Is(err, gorm.ErrDuplicatedKey) {
			return "", fmt.Errorf("duplicate key: %v, want gorm.ErrDuplicatedKey", err)
		}
		var n int64
		if err := qualified.WithContext(ctx).Model(&gormItem{}).Count(&n).Error; err != nil {
			return "", fmt.Errorf("after the error: %w", err)
		}
		err = qualified.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			err := tx.Exec("select 1/0").Error
			if err := wantState("division by zero", err, "22012", sqlState); err != nil {
				return err
			}
			err = tx.Exec("select 1").Error
			if err := wantState("in the failed transaction", err, "25P02", sqlState); err != nil {
				return err
			}
			return errors.New("roll back")
		})
		if err == nil || err.Error() != "roll back" {
			return "", err
		}
		err = qualified.WithContext(ctx).Model(&gormItem{}).Count(&n).Error
		return "ErrDuplicatedKey, then 22012 and 25P02 in a transaction", firstErr(err, want("rows", n, int64(3)))
	})

	r.step(ctx, "set_observed", func(ctx context.Context) (string, error) {
		for _, q := range []string{"SET search_path TO " + tg.Schema + ", public", "SET TimeZone TO '" + scenarioTZ + "'"} {
			if err := plain(ctx).Exec(q).Error; err != nil {
				return "", fmt.Errorf("%s: %w", q, err)
			}
		}
		return checkGORMSettings(ctx, db, tg)
	})

	r.step(ctx, "bulk_insert", func(ctx context.Context) (string, error) {
		rows := make([]gormBulk, bulkRows)
		for i := range rows {
			rows[i] = gormBulk{ID: i + 1, Payload: fmt.Sprint("payload ", i+1)}
		}
		// Unqualified names from here on: search_path finds them.
		unq := plain(ctx).Table("bulk")
		if err := unq.CreateInBatches(rows, 250).Error; err != nil {
			return "", err
		}
		var got struct{ Count, Sum int }
		if err := plain(ctx).Raw("select count(*) as count, sum(id) as sum from bulk").Scan(&got).Error; err != nil {
			return "", err
		}
		return "CreateInBatches of 250 (GORM has no COPY)", firstErr(want("count", got.Count, bulkRows), want("sum", got.Sum, bulkRows*(bulkRows+1)/2))
	})

	r.step(ctx, "cancel", func(ctx context.Context) (string, error) {
		qctx, cancel := context.WithCancel(ctx)
		defer cancel()
		timer := time.AfterFunc(cancelAfter, cancel)
		defer timer.Stop()
		start := time.Now()
		err := db.WithContext(qctx).Exec("select pg_sleep(30)").Error
		took := time.Since(start)
		if err := wantState("pg_sleep(30)", err, "57014", sqlState); err != nil {
			return "", err
		}
		if took > cancelWithin {
			return "", fmt.Errorf("the cancel took %s", took)
		}
		if _, err := checkGORMSettings(ctx, db, tg); err != nil {
			return "", fmt.Errorf("after the cancel: %w", err)
		}
		return fmt.Sprintf("WithContext cancel: 57014 after %s", took.Round(time.Millisecond)), nil
	})

	r.step(ctx, "survive_replacement", func(ctx context.Context) (string, error) {
		var item gormItem
		if err := plain(ctx).Table("items").First(&item, 2).Error; err != nil {
			return "", fmt.Errorf("before the kill: %w", err)
		}
		if err := killAll(ctx, tg); err != nil {
			return "", err
		}
		if _, err := checkGORMSettings(ctx, db, tg); err != nil {
			return "", fmt.Errorf("after the kill: %w", err)
		}
		// Both statements are in GORM's cache, prepared before the kill.
		var n int
		var third gormItem
		err1 := plain(ctx).Raw("select ?::int * 2", 21).Scan(&n).Error
		err2 := plain(ctx).Table("items").First(&third, 3).Error
		if err := firstErr(err1, err2); err != nil {
			return "", fmt.Errorf("cached statements after the kill: %w", err)
		}
		return "search_path, TimeZone, 2 cached prepared statements", firstErr(want("doubled", n, 42), want("item 3", third.Name, "item 3"))
	})
	return rep
}

// checkGORMSettings checks that the session sees the scenario's
// search_path and TimeZone.
func checkGORMSettings(ctx context.Context, db *gorm.DB, tg target) (string, error) {
	var got struct {
		N        int
		Path, TZ string
		Stamp    string
	}
	err := db.WithContext(ctx).Raw("select (select count(*) from items) as n, current_setting('search_path') as path, " +
		"current_setting('TimeZone') as tz, '2024-01-15 12:00:00+00'::timestamptz::text as stamp").Scan(&got).Error
	if err != nil {
		return "", err
	}
	return "search_path, TimeZone", firstErr(
		want("rows in items", got.N, 3),
		want("search_path", got.Path, tg.Schema+", public"),
		want("TimeZone", got.TZ, scenarioTZ),
		want("timestamptz text", got.Stamp, timestampNY))
}

// withDriverConn runs fn on the pgx connection under one of db's
// connections.
func withDriverConn(ctx context.Context, db *sql.DB, fn func(*stdlib.Conn) error) error {
	c, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Raw(func(dc any) error { return fn(dc.(*stdlib.Conn)) })
}
