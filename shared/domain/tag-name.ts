// What a tag's name may be: one rule for the API, the OpenAPI document and the CLI. A leaf module
// (zod only), so the CLI can check a name before asking without loading the domain and its drivers.
import { z } from 'zod';

/** `v` followed by digits is a version pin (@v3), never a tag. */
export const TAG_PATTERN = /^[a-z][a-z0-9-]{0,30}$/;
const VERSION_PIN = /^v[0-9]+$/;

export const tagNameSchema = z
  .string()
  .regex(TAG_PATTERN, 'a tag is 1–31 characters of a-z, 0-9 and "-", starting with a letter')
  .refine((t) => !VERSION_PIN.test(t), 'a tag cannot look like a version pin (v1, v2, …)');
