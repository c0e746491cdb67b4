# The fifteen services: one image, `serve NAME`, the same SHOPSTREAM_*
# variables as compose/compose.yaml, pointed at the AWS data stores (layer
# 20) and at each other through Cloud Map names (<name>.${var.dns_namespace}).
# Ports keep the native scheme: service i of SERVICE_NAMES
# (services/platform/src/config.rs) serves HTTP on 18080+i, gRPC on 18130+i.
#
# scripts/validate-deploy.sh checks that every SHOPSTREAM_* name here is one
# the service's code reads and that each peer address matches compose's.

locals {
  ns  = var.dns_namespace
  s3  = "https://s3.${var.region}.amazonaws.com"
  dat = data.terraform_remote_state.data.outputs

  # Variables every service gets (platform::config::Endpoints and logging).
  common_env = {
    SHOPSTREAM_KAFKA_BROKERS      = local.dat.kafka_bootstrap_brokers
    SHOPSTREAM_TEMPORAL_URL       = "http://temporal.${local.ns}:7233"
    SHOPSTREAM_TEMPORAL_NAMESPACE = "default"
    SHOPSTREAM_S3_ENDPOINT        = local.s3
    SHOPSTREAM_S3_REGION          = var.region
    SHOPSTREAM_OTLP_ENDPOINT      = "http://adot.${local.ns}:4317"
    SHOPSTREAM_LOG_FORMAT         = "json"
  }
  common_secrets = {
    SHOPSTREAM_POSTGRES_URL  = "postgres-url"
    SHOPSTREAM_REDIS_URL     = "redis-url"
    SHOPSTREAM_S3_ACCESS_KEY = "s3-access-key"
    SHOPSTREAM_S3_SECRET_KEY = "s3-secret-key"
  }

  services = {
    gateway = {
      index = 0, cpu = 256, memory = 512, buckets = []
      env = {
        SHOPSTREAM_IDENTITY_URL        = "http://identity.${local.ns}:18081"
        SHOPSTREAM_CATALOG_GRPC_URL    = "http://catalog.${local.ns}:18132"
        SHOPSTREAM_CATALOG_URL         = "http://catalog.${local.ns}:18082"
        SHOPSTREAM_INVENTORY_GRPC_URL  = "http://inventory.${local.ns}:18133"
        SHOPSTREAM_ORDERS_GRPC_URL     = "http://orders.${local.ns}:18135"
        SHOPSTREAM_PAYMENTS_GRPC_URL   = "http://payments.${local.ns}:18136"
        SHOPSTREAM_PAYMENTS_URL        = "http://payments.${local.ns}:18086"
        SHOPSTREAM_SEARCH_GRPC_URL     = "http://search.${local.ns}:18138"
        SHOPSTREAM_ANALYTICS_GRPC_URL  = "http://analytics.${local.ns}:18141"
        SHOPSTREAM_MEDIA_GRPC_URL      = "http://media.${local.ns}:18142"
        SHOPSTREAM_FEED_GRPC_URL       = "http://feed.${local.ns}:18143"
        SHOPSTREAM_COMPLIANCE_GRPC_URL = "http://compliance.${local.ns}:18144"
      }
      secrets = {}
    }
    identity = {
      index = 1, cpu = 256, memory = 512, buckets = []
      env = {
        # On EFS (an access point owned by the image's uid), so every task
        # and every restart signs with the same keys.
        SHOPSTREAM_IDENTITY_KEY_DIR = "/var/lib/shopstream/keys"
        SHOPSTREAM_COOKIE_SECURE    = "true"
      }
      secrets = {}
    }
    catalog = {
      index   = 2, cpu = 256, memory = 512, buckets = []
      env     = {}
      secrets = {}
    }
    inventory = {
      index   = 3, cpu = 256, memory = 512, buckets = []
      env     = {}
      secrets = {}
    }
    stripe-sim = {
      index = 4, cpu = 256, memory = 512, buckets = []
      env = {
        SHOPSTREAM_STRIPE_SIM_WEBHOOK_URL = "http://payments.${local.ns}:18086/webhooks/stripe"
      }
      # The same keys payments uses, so the emulator accepts its calls.
      secrets = {
        SHOPSTREAM_STRIPE_SIM_SECRET_KEY     = "stripe-secret-key"
        SHOPSTREAM_STRIPE_SIM_WEBHOOK_SECRET = "stripe-webhook-secret"
      }
    }
    orders = {
      index = 5, cpu = 256, memory = 512, buckets = []
      env = {
        SHOPSTREAM_ORDERS_CATALOG_URL   = "http://catalog.${local.ns}:18132"
        SHOPSTREAM_ORDERS_INVENTORY_URL = "http://inventory.${local.ns}:18133"
        SHOPSTREAM_ORDERS_PAYMENTS_URL  = "http://payments.${local.ns}:18136"
      }
      secrets = {}
    }
    payments = {
      index = 6, cpu = 256, memory = 512, buckets = []
      env = {
        # stripe-sim; var.stripe_api_base (Stripe test mode, with the two
        # stripe-* secrets) replaces it below.
        SHOPSTREAM_STRIPE_API_BASE = "http://stripe-sim.${local.ns}:18084"
      }
      secrets = {
        SHOPSTREAM_STRIPE_SECRET_KEY     = "stripe-secret-key"
        SHOPSTREAM_STRIPE_WEBHOOK_SECRET = "stripe-webhook-secret"
      }
    }
    cdc = {
      index   = 7, cpu = 256, memory = 512, buckets = []
      env     = {}
      secrets = {}
    }
    search = {
      index = 8, cpu = 256, memory = 512, buckets = []
      env = {
        SHOPSTREAM_SEARCH_CATALOG_URL = "http://catalog.${local.ns}:18132"
        SHOPSTREAM_SEARCH_BACKEND     = "opensearch"
      }
      secrets = {
        SHOPSTREAM_OPENSEARCH_URL = "opensearch-url"
      }
    }
    notifications = {
      index = 9, cpu = 256, memory = 512, buckets = []
      env = {
        SHOPSTREAM_IDENTITY_GRPC_URL           = "http://identity.${local.ns}:18131"
        SHOPSTREAM_NOTIFICATIONS_SMTP          = "mail-sim.${local.ns}:18140"
        SHOPSTREAM_NOTIFICATIONS_MAIL_SINK_URL = "http://mail-sim.${local.ns}:18090"
      }
      secrets = {}
    }
    mail-sim = {
      index = 10, cpu = 256, memory = 512, buckets = []
      env = {
        SHOPSTREAM_MAIL_SIM_SMTP_ADDR = "0.0.0.0:18140"
        SHOPSTREAM_MAIL_SIM_DIR       = "/var/lib/shopstream/mail-sim/messages"
      }
      secrets = {}
    }
    analytics = {
      index   = 11, cpu = 256, memory = 512, buckets = []
      env     = {}
      secrets = {}
    }
    media = {
      index = 12, cpu = 512, memory = 1024, buckets = ["media", "media_uploads"]
      env = {
        SHOPSTREAM_MEDIA_BUCKET        = local.dat.buckets.media
        SHOPSTREAM_MEDIA_UPLOAD_BUCKET = local.dat.buckets.media_uploads
        SHOPSTREAM_MEDIA_PUBLIC_S3_URL = local.s3
        SHOPSTREAM_MEDIA_SCRATCH_DIR   = "/var/lib/shopstream/media"
      }
      secrets = {}
    }
    feed = {
      index = 13, cpu = 256, memory = 512, buckets = []
      # No SHOPSTREAM_SCYLLA_URL: the timeline stays on the Postgres adapter
      # (Amazon Keyspaces needs TLS and SigV4 in the client; not built).
      env = {}
      secrets = {
        SHOPSTREAM_FEED_CURSOR_KEY = "feed-cursor-key"
      }
    }
    compliance = {
      index = 14, cpu = 256, memory = 512, buckets = ["audit", "dsar_exports"]
      env = {
        SHOPSTREAM_COMPLIANCE_AUDIT_BUCKET  = local.dat.buckets.audit
        SHOPSTREAM_COMPLIANCE_EXPORT_BUCKET = local.dat.buckets.dsar_exports
        SHOPSTREAM_COMPLIANCE_PUBLIC_S3_URL = local.s3
        SHOPSTREAM_IDENTITY_GRPC_URL        = "http://identity.${local.ns}:18131"
        SHOPSTREAM_ORDERS_GRPC_URL          = "http://orders.${local.ns}:18135"
        SHOPSTREAM_NOTIFICATIONS_GRPC_URL   = "http://notifications.${local.ns}:18139"
        SHOPSTREAM_ANALYTICS_GRPC_URL       = "http://analytics.${local.ns}:18141"
        SHOPSTREAM_FEED_GRPC_URL            = "http://feed.${local.ns}:18143"
        SHOPSTREAM_MEDIA_GRPC_URL           = "http://media.${local.ns}:18142"
        SHOPSTREAM_GATEWAY_GRPC_URL         = "http://gateway.${local.ns}:18130"
      }
      secrets = {}
    }
  }

  # HTTP/gRPC listeners on the native scheme, by service.
  service_env = {
    for name, s in local.services : name => merge(
      local.common_env,
      {
        "SHOPSTREAM_${upper(replace(name, "-", "_"))}_HTTP_ADDR" = "0.0.0.0:${18080 + s.index}"
        "SHOPSTREAM_${upper(replace(name, "-", "_"))}_GRPC_ADDR" = "0.0.0.0:${18130 + s.index}"
      },
      s.env,
      # (a for expression, so both branches are maps of strings)
      { for k, v in { SHOPSTREAM_STRIPE_API_BASE = var.stripe_api_base } : k => v if name == "payments" && v != "" },
    )
  }
  service_secrets = {
    for name, s in local.services : name => merge(local.common_secrets, s.secrets)
  }
}
