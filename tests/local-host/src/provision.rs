//! Creates the template's DynamoDB tables and SQS queues in the local AWS stand-in (moto), named
//! `<stack>-<LogicalId>`, and reports what each logical id stands for.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use yaml_serde::Value;

use crate::template::{Physical, Template, resolve};

/// The account id moto reports.
pub const LOCAL_ACCOUNT: &str = "123456789012";

/// A resource could not be created.
#[derive(Debug, thiserror::Error)]
#[error("provisioning {resource}: {message}")]
pub struct ProvisionError {
    resource: String,
    message: String,
}

fn err(resource: &str, message: impl std::fmt::Display) -> ProvisionError {
    ProvisionError { resource: resource.to_owned(), message: message.to_string() }
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn seq<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_sequence).map(Vec::as_slice).unwrap_or(&[])
}

fn key_schema(id: &str, list: &[Value]) -> Result<Vec<KeySchemaElement>, ProvisionError> {
    list.iter()
        .map(|k| {
            let name = s(k, "AttributeName").ok_or_else(|| err(id, "KeySchema entry without AttributeName"))?;
            let kind = KeyType::from(s(k, "KeyType").unwrap_or("HASH"));
            KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(|e| err(id, e))
        })
        .collect()
}

/// Pseudo parameters for a local stack.
pub fn pseudo_parameters(stack: &str, region: &str) -> HashMap<String, String> {
    HashMap::from([
        ("AWS::StackName".to_owned(), stack.to_owned()),
        ("AWS::Region".to_owned(), region.to_owned()),
        ("AWS::AccountId".to_owned(), LOCAL_ACCOUNT.to_owned()),
        ("AWS::Partition".to_owned(), "aws".to_owned()),
        ("AWS::URLSuffix".to_owned(), "amazonaws.com".to_owned()),
    ])
}

/// Creates every `AWS::DynamoDB::Table` and `AWS::SQS::Queue` of the template.
pub async fn provision(
    template: &Template,
    sdk: &aws_config::SdkConfig,
    stack: &str,
) -> Result<Physical, ProvisionError> {
    let region = sdk.region().map(ToString::to_string).unwrap_or_else(|| "us-east-1".to_owned());
    let mut physical = Physical { pseudo: pseudo_parameters(stack, &region), ..Physical::default() };
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    for (id, props) in template.resources_of_type("AWS::DynamoDB::Table") {
        let name = format!("{stack}-{id}");
        let mut req = dynamo.create_table().table_name(&name).billing_mode(BillingMode::PayPerRequest);
        for a in seq(&props, "AttributeDefinitions") {
            let attr = AttributeDefinition::builder()
                .attribute_name(s(a, "AttributeName").unwrap_or_default())
                .attribute_type(ScalarAttributeType::from(s(a, "AttributeType").unwrap_or("S")))
                .build()
                .map_err(|e| err(&id, e))?;
            req = req.attribute_definitions(attr);
        }
        req = req.set_key_schema(Some(key_schema(&id, seq(&props, "KeySchema"))?));
        for g in seq(&props, "GlobalSecondaryIndexes") {
            let projection = g.get("Projection").and_then(|p| s(p, "ProjectionType")).unwrap_or("ALL");
            let index = GlobalSecondaryIndex::builder()
                .index_name(s(g, "IndexName").unwrap_or_default())
                .set_key_schema(Some(key_schema(&id, seq(g, "KeySchema"))?))
                .projection(Projection::builder().projection_type(ProjectionType::from(projection)).build())
                .build()
                .map_err(|e| err(&id, e))?;
            req = req.global_secondary_indexes(index);
        }
        let out = req.send().await.map_err(|e| err(&id, e.into_service_error()))?;
        let arn = out.table_description.and_then(|d| d.table_arn).unwrap_or_default();
        if let Some(ttl) = props.get("TimeToLiveSpecification").and_then(|t| s(t, "AttributeName")) {
            let spec = TimeToLiveSpecification::builder()
                .attribute_name(ttl)
                .enabled(true)
                .build()
                .map_err(|e| err(&id, e))?;
            dynamo
                .update_time_to_live()
                .table_name(&name)
                .time_to_live_specification(spec)
                .send()
                .await
                .map_err(|e| err(&id, e.into_service_error()))?;
        }
        physical.refs.insert(id.clone(), name);
        physical.attrs.insert(format!("{id}.Arn"), arn);
    }

    // Queues first without redrive policies (a DLQ may be declared after its source queue),
    // then the policies once every ARN is known.
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let queues = template.resources_of_type("AWS::SQS::Queue");
    for (id, props) in &queues {
        let fifo = props.get("FifoQueue").and_then(Value::as_bool).unwrap_or(false);
        let name = if fifo { format!("{stack}-{id}.fifo") } else { format!("{stack}-{id}") };
        let mut req = sqs.create_queue().queue_name(&name);
        for (key, attr) in [
            ("VisibilityTimeout", QueueAttributeName::VisibilityTimeout),
            ("MessageRetentionPeriod", QueueAttributeName::MessageRetentionPeriod),
            ("DelaySeconds", QueueAttributeName::DelaySeconds),
            ("ReceiveMessageWaitTimeSeconds", QueueAttributeName::ReceiveMessageWaitTimeSeconds),
        ] {
            if let Some(v) = props.get(key).and_then(|v| resolve(v, &HashMap::new(), &physical)) {
                req = req.attributes(attr, v);
            }
        }
        if fifo {
            req = req.attributes(QueueAttributeName::FifoQueue, "true");
            if props.get("ContentBasedDeduplication").and_then(Value::as_bool).unwrap_or(false) {
                req = req.attributes(QueueAttributeName::ContentBasedDeduplication, "true");
            }
        }
        let out = req.send().await.map_err(|e| err(id, e.into_service_error()))?;
        let url = out.queue_url.ok_or_else(|| err(id, "no queue URL"))?;
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| err(id, e.into_service_error()))?;
        let arn = attrs.attributes.and_then(|mut a| a.remove(&QueueAttributeName::QueueArn)).unwrap_or_default();
        physical.refs.insert(id.clone(), url);
        physical.attrs.insert(format!("{id}.Arn"), arn.clone());
        physical.attrs.insert(format!("{id}.QueueName"), name);
    }
    for (id, props) in &queues {
        let Some(policy) = props.get("RedrivePolicy") else {
            continue;
        };
        let target = policy
            .get("deadLetterTargetArn")
            .and_then(|v| resolve(v, &HashMap::new(), &physical))
            .ok_or_else(|| err(id, "RedrivePolicy.deadLetterTargetArn does not resolve"))?;
        let max = policy
            .get("maxReceiveCount")
            .and_then(|v| resolve(v, &HashMap::new(), &physical))
            .unwrap_or_else(|| "5".into());
        let json = format!(r#"{{"deadLetterTargetArn":"{target}","maxReceiveCount":{max}}}"#);
        sqs.set_queue_attributes()
            .queue_url(&physical.refs[id])
            .attributes(QueueAttributeName::RedrivePolicy, json)
            .send()
            .await
            .map_err(|e| err(id, e.into_service_error()))?;
    }
    Ok(physical)
}
