variable "region" {
  description = "AWS region (the same in every layer)."
  type        = string
  default     = "us-east-1"
}

variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
  default     = "shopstream-demo"
}

variable "state_bucket" {
  description = "The state bucket made by 00-bootstrap (to read layer 10's outputs)."
  type        = string
}

variable "db_instance_class" {
  description = "RDS class. db.t4g.small allows ~200 connections: 12 service pools of 10 plus Temporal."
  type        = string
  default     = "db.t4g.small"
}

variable "cache_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.micro"
}

variable "opensearch_instance_type" {
  description = "OpenSearch data node type (one node)."
  type        = string
  default     = "t3.small.search"
}

variable "audit_retention_days" {
  description = "Object Lock (COMPLIANCE) retention of the DSAR audit chain. Nobody, root included, can delete a locked object before it ends, and `terraform destroy` cannot remove the bucket until then."
  type        = number
  default     = 7
}

variable "public_origins" {
  description = "Browser origins allowed to use presigned upload/download URLs (CORS), e.g. [\"https://shop.example.com\"]."
  type        = list(string)
  default     = []
}

variable "deletion_protection" {
  description = "Protect the database from deletion. Set false (and apply) before `terraform destroy`."
  type        = bool
  default     = true
}
