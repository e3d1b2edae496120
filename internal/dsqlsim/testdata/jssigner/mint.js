// mint.js prints Aurora DSQL IAM tokens made by @aws-sdk/dsql-signer, one
// line per action, for dsqlsim's verifier tests. Nothing secret is taken from
// argv.
//
// Arguments: host region expiresInSeconds action...   (action: DbConnect | DbConnectAdmin)
// Environment: DSQLSIM_AKID, DSQLSIM_SECRET, optional DSQLSIM_SESSION_TOKEN.
"use strict";

const { DsqlSigner } = require("@aws-sdk/dsql-signer");

async function main() {
  const [host, region, expiresIn, ...actions] = process.argv.slice(2);
  if (!host || !region || !expiresIn || actions.length === 0) {
    throw new Error("usage: node mint.js host region expiresInSeconds DbConnect|DbConnectAdmin...");
  }
  const credentials = {
    accessKeyId: process.env.DSQLSIM_AKID,
    secretAccessKey: process.env.DSQLSIM_SECRET,
  };
  if (process.env.DSQLSIM_SESSION_TOKEN) {
    credentials.sessionToken = process.env.DSQLSIM_SESSION_TOKEN;
  }
  if (!credentials.accessKeyId || !credentials.secretAccessKey) {
    throw new Error("DSQLSIM_AKID and DSQLSIM_SECRET must be set");
  }
  const signer = new DsqlSigner({
    hostname: host,
    region,
    credentials,
    expiresIn: Number(expiresIn),
  });
  for (const action of actions) {
    let token;
    if (action === "DbConnectAdmin") {
      token = await signer.getDbConnectAdminAuthToken();
    } else if (action === "DbConnect") {
      token = await signer.getDbConnectAuthToken();
    } else {
      throw new Error(`unknown action ${action}`);
    }
    process.stdout.write(token + "\n");
  }
}

main().catch((err) => {
  process.stderr.write(`mint.js: ${err && err.message ? err.message : err}\n`);
  process.exit(1);
});
