"""Regenerates botocore.json: a DSQL admin token minted by botocore (the
library behind the AWS CLI's `aws dsql generate-db-connect-admin-auth-token`),
in the CLI's "host/?query" form, with made-up credentials. dsqlsim's tests
verify it at a clock set to its X-Amz-Date, so it never goes stale.

    python3 mint_botocore.py > botocore.json
"""
import json

import botocore
import botocore.session

HOST = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
REGION = "us-east-1"
AKID = "AKIDDSQLSIMBOTOCORE01"
SECRET = "botocore/made+up=secret0123456789abcdefg"
SESSION_TOKEN = "made-up/session+token=with spaces"

client = botocore.session.get_session().create_client(
    "dsql",
    region_name=REGION,
    aws_access_key_id=AKID,
    aws_secret_access_key=SECRET,
    aws_session_token=SESSION_TOKEN,
)
token = client.generate_db_connect_admin_auth_token(HOST, REGION, 900)
print(json.dumps({
    "generated_by": "botocore " + botocore.__version__,
    "host": HOST,
    "region": REGION,
    "role": "admin",
    "access_key_id": AKID,
    "secret_access_key": SECRET,
    "session_token": SESSION_TOKEN,
    "token": token,
}, indent=2))
