variable "region" {
  description = "AWS region of the whole deployment."
  type        = string
  default     = "us-east-1"
}

variable "name_prefix" {
  description = "Prefix of every resource name (S3 bucket names add the account id)."
  type        = string
  default     = "shopstream-demo"
}
