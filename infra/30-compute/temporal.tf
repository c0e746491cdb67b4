# Temporal, self-hosted on Fargate (docs/adr/0014-aws-compute-and-temporal.md):
# the temporalio/server image, all four roles in one task, its state in two
# databases on the RDS instance of layer 20 (TLS, as rds.force_ssl requires).
# Two one-off task definitions prepare it; run them with `aws ecs run-task`
# (infra/README.md): temporal-schema before the first start and after an
# upgrade, temporal-namespace once the server is up.

locals {
  temporal_version  = "1.28.1"
  temporal_image    = "temporalio/server:${local.temporal_version}"
  admin_tools_image = "temporalio/admin-tools:${local.temporal_version}-tctl-1.18.4-cli-1.4.1"
  temporal_db_env = [
    { name = "DB", value = "postgres12" },
    { name = "DB_PORT", value = "5432" },
    { name = "POSTGRES_SEEDS", value = local.dat.postgres_address },
    { name = "POSTGRES_USER", value = "shopstream" },
    { name = "DBNAME", value = "temporal" },
    { name = "VISIBILITY_DBNAME", value = "temporal_visibility" },
    { name = "SQL_TLS_ENABLED", value = "true" },
    # The image carries no RDS CA bundle: encrypted, hostname not verified.
    { name = "SQL_HOST_VERIFICATION", value = "false" },
  ]
  temporal_db_secrets = [
    { name = "POSTGRES_PWD", valueFrom = local.secrets["postgres-password"] },
  ]
  temporal_logs = {
    logDriver = "awslogs"
    options = {
      awslogs-group         = aws_cloudwatch_log_group.services.name
      awslogs-region        = var.region
      awslogs-stream-prefix = "temporal"
    }
  }
}

resource "aws_iam_role" "temporal" {
  name               = "${var.name_prefix}-temporal"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_ecs_task_definition" "temporal" {
  #checkov:skip=CKV_AWS_336:the server writes its dynamic config and temp files in the image's own paths
  family                   = "${var.name_prefix}-temporal"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 512
  memory                   = 1024
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.temporal.arn
  container_definitions = jsonencode([{
    name                   = "temporal"
    image                  = local.temporal_image
    essential              = true
    readonlyRootFilesystem = false
    user                   = "1000:1000"
    # Ringpop needs a reachable address: the task's own, not 0.0.0.0.
    entryPoint = ["/bin/sh", "-c"]
    command    = ["export TEMPORAL_BROADCAST_ADDRESS=$(hostname -i | cut -d' ' -f1) && exec /etc/temporal/entrypoint.sh"]
    portMappings = [
      { containerPort = 7233, protocol = "tcp", name = "frontend" },
    ]
    environment = concat(local.temporal_db_env, [
      { name = "BIND_ON_IP", value = "0.0.0.0" },
      { name = "LOG_LEVEL", value = "warn" },
    ])
    secrets          = local.temporal_db_secrets
    logConfiguration = local.temporal_logs
  }])
}

resource "aws_ecs_service" "temporal" {
  name             = "temporal"
  cluster          = aws_ecs_cluster.main.id
  task_definition  = aws_ecs_task_definition.temporal.arn
  desired_count    = 1
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  propagate_tags   = "SERVICE"
  network_configuration {
    subnets          = local.net.private_subnet_ids
    security_groups  = [local.net.tasks_security_group_id]
    assign_public_ip = false
  }
  service_registries {
    registry_arn = aws_service_discovery_service.this["temporal"].arn
  }
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
}

# One-off: create the two databases and apply the versioned schemas.
resource "aws_ecs_task_definition" "temporal_schema" {
  #checkov:skip=CKV_AWS_336:a one-off schema tool; it writes nothing but its output
  family                   = "${var.name_prefix}-temporal-schema"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.temporal.arn
  container_definitions = jsonencode([{
    name                   = "temporal-schema"
    image                  = local.admin_tools_image
    essential              = true
    readonlyRootFilesystem = false
    user                   = "1000:1000"
    entryPoint             = ["/bin/sh", "-c"]
    command = [join(" && ", [
      "set -e",
      "T='temporal-sql-tool --plugin postgres12 --ep $POSTGRES_SEEDS -p 5432 -u $POSTGRES_USER --pw $POSTGRES_PWD --tls --tls-disable-host-verification'",
      "$T --db temporal create-database || true",
      "$T --db temporal setup-schema -v 0.0",
      "$T --db temporal update-schema -d /etc/temporal/schema/postgresql/v12/temporal/versioned",
      "$T --db temporal_visibility create-database || true",
      "$T --db temporal_visibility setup-schema -v 0.0",
      "$T --db temporal_visibility update-schema -d /etc/temporal/schema/postgresql/v12/visibility/versioned",
    ])]
    environment      = local.temporal_db_env
    secrets          = local.temporal_db_secrets
    logConfiguration = local.temporal_logs
  }])
}

# One-off: the `default` namespace the services use (SHOPSTREAM_TEMPORAL_NAMESPACE).
resource "aws_ecs_task_definition" "temporal_namespace" {
  #checkov:skip=CKV_AWS_336:a one-off CLI call; it writes nothing
  family                   = "${var.name_prefix}-temporal-namespace"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.temporal.arn
  container_definitions = jsonencode([{
    name                   = "temporal-namespace"
    image                  = local.admin_tools_image
    essential              = true
    readonlyRootFilesystem = false
    user                   = "1000:1000"
    entryPoint             = ["temporal"]
    command                = ["operator", "namespace", "create", "--namespace", "default", "--retention", "72h", "--address", "temporal.${local.ns}:7233"]
    logConfiguration       = local.temporal_logs
  }])
}
